//! The wall clock the runtime reads for budgets: which budget day a spend counts on, and so when
//! a daily cap resets. Embedders and tests can give their own ([`Runtime::start_with_clock`]),
//! so a test crosses midnight without waiting for it.
//!
//! [`Runtime::start_with_clock`]: crate::Runtime::start_with_clock

use std::fmt;
use std::sync::Arc;

use iris_core::Timestamp;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Timestamp::now))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
