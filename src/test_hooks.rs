//! Test-only fault hooks, so the black-box tests can prove crash containment through
//! the real binary. Both are off unless their environment variable is set when the
//! process starts; never set them in production.
//!
//! - `OUTRIGGER_TEST_PANIC_PATH=/p`: a request for exactly `/p` panics inside its
//!   connection's (or HTTP/2 stream's) handling, as a codec bug would.
//! - `OUTRIGGER_TEST_WORKER_PANIC_PATH=/p`: a request for exactly `/p` panics the
//!   worker executor itself, outside any connection, as a bug in the worker would.
//!
//! The hooks are read once per worker and kept in its `WorkerView`, so checking them on
//! a request is a field read and a compare only when one is set.

/// The hooks in force on one worker.
#[derive(Debug, Default)]
pub struct TestHooks {
    panic_path: Option<Box<str>>,
    worker_panic_path: Option<Box<str>>,
    /// Set by a request for `worker_panic_path`; the worker's housekeeping task, which
    /// runs outside any connection's containment, panics when it sees it.
    worker_must_panic: std::cell::Cell<bool>,
    /// The worker's housekeeping alarm, rung at once when `worker_must_panic` is set.
    alarm: Option<std::rc::Rc<crate::alarm::Alarm>>,
}

impl TestHooks {
    pub fn from_env() -> TestHooks {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.is_empty())
                .map(String::into_boxed_str)
        };
        TestHooks {
            panic_path: var("OUTRIGGER_TEST_PANIC_PATH"),
            worker_panic_path: var("OUTRIGGER_TEST_WORKER_PANIC_PATH"),
            worker_must_panic: std::cell::Cell::new(false),
            alarm: None,
        }
    }

    /// Has `worker_panic_path` wake the worker's housekeeping task through `alarm`.
    pub fn with_alarm(self, alarm: std::rc::Rc<crate::alarm::Alarm>) -> TestHooks {
        TestHooks {
            alarm: Some(alarm),
            ..self
        }
    }

    /// Called with each request's path (without the query) once its head is parsed.
    #[inline]
    pub fn on_request(&self, path: &str) {
        if self.panic_path.as_deref() == Some(path) {
            panic!("test hook: panic while serving {path}");
        }
        if self.worker_panic_path.as_deref() == Some(path) {
            self.worker_must_panic.set(true);
            if let Some(a) = &self.alarm {
                a.ring_at(std::time::Instant::now());
            }
        }
    }

    /// Called by the worker's own housekeeping task, outside any containment: a panic
    /// here unwinds through the executor and stops the worker.
    pub fn on_worker_tick(&self) {
        if self.worker_must_panic.get() {
            panic!("test hook: worker executor panic");
        }
    }
}
