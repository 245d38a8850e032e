//! An async job pool whose jobs add jobs, with a queue bounded by its workers (the object-store
//! listings' work queue, as `walker.rs` is the filesystem's).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A pool of async jobs, at most `workers` running at once, where a running job can offer more. Its
/// queue is bounded, after ripgrep's walker: a job offered while `workers` jobs wait already is refused,
/// and the one that offered it does it itself (depth first), so memory never grows with the width of
/// the tree.
pub struct Pool<J> {
    queue: mpsc::Sender<J>,
    running: Arc<AtomicUsize>,
    workers: usize,
}

impl<J> Pool<J> {
    /// Queues `job` for another worker; gives it back when the queue is full.
    pub fn offer(&self, job: J) -> Option<J> {
        match self.queue.try_send(job) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => Some(job),
        }
    }

    /// True when fewer jobs run than there are workers: a good moment to split work.
    pub fn has_free_slot(&self) -> bool {
        self.running.load(Ordering::Relaxed) < self.workers
    }
}

impl<J> Clone for Pool<J> {
    fn clone(&self) -> Self {
        Pool { queue: self.queue.clone(), running: self.running.clone(), workers: self.workers }
    }
}

/// Runs `work` over `seeds` and every job the jobs queue, `workers` at a time; returns when all are done.
pub async fn run_pool<J, F, Fut>(workers: usize, seeds: Vec<J>, work: F)
where
    J: Send + 'static,
    F: Fn(J, Pool<J>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers = workers.max(1);
    let (queue, mut jobs) = mpsc::channel(workers.max(seeds.len()));
    let pool = Pool { queue, running: Arc::new(AtomicUsize::new(0)), workers };
    for seed in seeds {
        let _ = pool.offer(seed);
    }
    let mut running = JoinSet::new();
    let start = |job: J, running: &mut JoinSet<()>| {
        pool.running.fetch_add(1, Ordering::Relaxed);
        let counter = pool.running.clone();
        let future = work(job, pool.clone());
        running.spawn(async move {
            future.await;
            counter.fetch_sub(1, Ordering::Relaxed);
        });
    };
    loop {
        if running.len() >= workers {
            running.join_next().await.expect("jobs are running").expect("a listing job panicked");
            continue;
        }
        match jobs.try_recv() {
            Ok(job) => start(job, &mut running),
            // Nothing queued and nothing running: no job is left to queue more.
            Err(_) if running.is_empty() => return,
            Err(_) => tokio::select! {
                Some(job) = jobs.recv() => start(job, &mut running),
                Some(done) = running.join_next() => done.expect("a listing job panicked"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<std::sync::Mutex<Vec<u32>>>;

    /// A job of the test tree: records `n`, offers its two children, does the refused ones itself.
    fn visit(n: u32, pool: Pool<u32>, seen: Seen) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            seen.lock().unwrap().push(n);
            if n < 100 {
                for child in [n * 2, n * 2 + 1] {
                    if let Some(child) = pool.offer(child) {
                        visit(child, pool.clone(), seen.clone()).await;
                    }
                }
            }
        })
    }

    #[tokio::test]
    async fn the_pool_runs_every_job_once_with_a_queue_bounded_by_its_workers() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        run_pool(3, vec![1u32], move |n, pool| {
            assert_eq!(pool.queue.max_capacity(), 3, "the queue holds at most one job per worker");
            visit(n, pool, log.clone())
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (1..=199).collect::<Vec<_>>());
    }
}
