//! The one owner of standard error (as cargo's `Shell` is): log lines and, on a terminal, a status line
//! kept at the bottom (an `indicatif` bar whose message is the run's progress line), which each log line
//! is printed above.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Shell {
    /// Standard error is a terminal and lines are text: a status line may be drawn.
    terminal: bool,
    /// The status line, while one is drawn.
    status: Mutex<Option<ProgressBar>>,
}

impl Default for Shell {
    /// A shell that draws no status line.
    fn default() -> Shell {
        Shell { terminal: false, status: Mutex::new(None) }
    }
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shell(terminal: {})", self.terminal)
    }
}

impl Shell {
    pub fn new(text: bool) -> Shell {
        Shell { terminal: text && std::io::stderr().is_terminal(), status: Mutex::new(None) }
    }

    /// Whether a live status line can be drawn (text on a terminal).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Writes one line (above the status line, if one is drawn).
    pub fn print(&self, line: &str) {
        let status = self.status.lock().expect("shell poisoned");
        match status.as_ref() {
            Some(bar) => bar.println(line),
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
                let _ = err.flush();
            }
        }
    }

    /// Draws (or replaces) the status line; only on a terminal. A line wider than the terminal is cut.
    pub fn status(&self, line: String) {
        if !self.terminal {
            return;
        }
        let mut status = self.status.lock().expect("shell poisoned");
        let bar = status.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
            bar
        });
        bar.set_message(line);
    }

    /// Removes the status line for good (the summary follows).
    pub fn clear_status(&self) {
        if let Some(bar) = self.status.lock().expect("shell poisoned").take() {
            bar.finish_and_clear();
        }
    }
}
