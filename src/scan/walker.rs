//! A parallel walker with one shared, short work queue, after ripgrep's `ignore::WalkParallel`.
//!
//! Workers pop a job, visit it, and may *offer* the sub-jobs they find. An offer is taken into the shared
//! queue only while the queue is shorter than the number of workers (someone is, or soon will be, idle);
//! otherwise the offering worker does the job itself, depth first. So big folders split across workers
//! exactly when other workers have nothing to do, small ones are never scattered, and the queue (hence
//! memory) stays bounded by the number of workers whatever the size of the tree.
//!
//! The walk ends when no job is queued or running, or as soon as a visitor calls `stop`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

/// The shared queue, handed to each visit so that it can offer sub-jobs or stop the walk.
pub struct WorkQueue<J> {
    state: Mutex<QueueState<J>>,
    changed: Condvar,
    workers: usize,
    stopped: AtomicBool,
}

struct QueueState<J> {
    jobs: VecDeque<J>,
    /// Jobs queued or being visited; the walk is over when this reaches zero.
    pending: usize,
}

impl<J: Send> WorkQueue<J> {
    fn new(workers: usize, seeds: impl IntoIterator<Item = J>) -> WorkQueue<J> {
        let jobs: VecDeque<J> = seeds.into_iter().collect();
        let pending = jobs.len();
        WorkQueue {
            state: Mutex::new(QueueState { jobs, pending }),
            changed: Condvar::new(),
            workers,
            stopped: AtomicBool::new(false),
        }
    }

    /// Offers a sub-job to the other workers. `None`: the queue took it. `Some(job)`: every worker is busy
    /// and the queue is full enough, so the caller visits it itself, now.
    pub fn offer(&self, job: J) -> Option<J> {
        if self.is_stopped() {
            return None;
        }
        let mut state = self.state.lock().expect("walker queue poisoned");
        if state.jobs.len() >= self.workers {
            return Some(job);
        }
        state.jobs.push_back(job);
        state.pending += 1;
        drop(state);
        self.changed.notify_one();
        None
    }

    /// Ends the walk early: queued jobs are dropped and offers are refused.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let mut state = self.state.lock().expect("walker queue poisoned");
        let dropped = state.jobs.len();
        state.jobs.clear();
        state.pending -= dropped;
        drop(state);
        self.changed.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Waits for a job; `None` once the walk is over.
    fn next_job(&self) -> Option<J> {
        let mut state = self.state.lock().expect("walker queue poisoned");
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.pending == 0 || self.is_stopped() {
                return None;
            }
            state = self.changed.wait(state).expect("walker queue poisoned");
        }
    }

    fn finish_job(&self) {
        let mut state = self.state.lock().expect("walker queue poisoned");
        state.pending -= 1;
        if state.pending == 0 {
            drop(state);
            self.changed.notify_all();
        }
    }
}

/// Runs `visit` over `seeds` and every job offered on the way, on `workers` threads; returns when the
/// walk is over. `visit` may call itself for the jobs it keeps (see `WorkQueue::offer`).
pub fn walk_parallel<J, F>(workers: usize, seeds: impl IntoIterator<Item = J>, visit: F)
where
    J: Send,
    F: Fn(J, &WorkQueue<J>) + Sync,
{
    let workers = workers.max(1);
    let queue = WorkQueue::new(workers, seeds);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(job) = queue.next_job() {
                    visit(job, &queue);
                    queue.finish_job();
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A tree where job n has children 10n+1 ..= 10n+fanout, down to `depth`.
    fn count_tree(workers: usize, fanout: u64, depth: u32) -> (usize, u64) {
        let visited = AtomicUsize::new(0);
        let sum = std::sync::atomic::AtomicU64::new(0);
        fn visit(
            job: (u64, u32),
            q: &WorkQueue<(u64, u32)>,
            fanout: u64,
            depth: u32,
            v: &AtomicUsize,
            s: &std::sync::atomic::AtomicU64,
        ) {
            v.fetch_add(1, Ordering::Relaxed);
            s.fetch_add(job.0, Ordering::Relaxed);
            if job.1 == depth {
                return;
            }
            for c in 1..=fanout {
                if let Some(kept) = q.offer((job.0 * 10 + c, job.1 + 1)) {
                    visit(kept, q, fanout, depth, v, s);
                }
            }
        }
        walk_parallel(workers, [(0u64, 0u32)], |job, q| visit(job, q, fanout, depth, &visited, &sum));
        (visited.load(Ordering::Relaxed), sum.load(Ordering::Relaxed))
    }

    #[test]
    fn visits_every_job_exactly_once_whatever_the_worker_count() {
        let expected = count_tree(1, 5, 5);
        assert_eq!(expected.0, 1 + 5 + 25 + 125 + 625 + 3125);
        for workers in [2, 3, 8, 32] {
            assert_eq!(count_tree(workers, 5, 5), expected, "{workers} workers");
        }
    }

    #[test]
    fn stop_ends_the_walk_early() {
        let visited = AtomicUsize::new(0);
        walk_parallel(4, 0..1_000_000u32, |_, q| {
            if visited.fetch_add(1, Ordering::Relaxed) == 10 {
                q.stop();
            }
        });
        assert!(visited.load(Ordering::Relaxed) < 1000);
    }
}
