//! Waiting for something that happens asynchronously (a snapshot rebuilt,
//! a process up, a resource expired) by polling it, instead of sleeping a
//! guessed while.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a wait lasts unless a test says otherwise: generous, as a busy
/// machine is slow, and a wait that succeeds costs only what it takes.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Polls start at this interval and double up to [`MAX_INTERVAL`]: quick
/// for what is nearly there, light on what takes seconds.
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(250);

/// What a probe of [`eventually`] answers: done (with a value) or not yet.
pub trait Outcome {
    type Value;
    /// `Ok` when done; else what was seen, for the failure message.
    fn done(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Err(seen)`: not yet, and the last `seen` is named if the wait fails.
impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

/// The pace of one wait: when to poll next, and when to give up.
struct Pace {
    deadline: Instant,
    interval: Duration,
}

impl Pace {
    fn new(within: Duration) -> Pace {
        Pace {
            deadline: Instant::now() + within,
            interval: FIRST_INTERVAL,
        }
    }

    /// How long to sleep before the next poll; `None` once time is up.
    fn next(&mut self) -> Option<Duration> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let interval = self.interval;
        self.interval = (interval * 2).min(MAX_INTERVAL);
        Some(interval)
    }
}

fn give_up(what: impl Display, within: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("waited {within:?} in vain for {what}; last seen: {seen}"),
        None => panic!("waited {within:?} in vain for {what}"),
    }
}

/// Polls `probe` until it answers `true`, `Some(value)` or `Ok(value)`, and
/// returns the value; fails the test, naming `what` was awaited (and the
/// last thing seen), when that takes longer than `within`.
pub async fn eventually<O, F>(
    what: impl Display,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> O::Value
where
    O: Outcome,
    F: Future<Output = O>,
{
    let mut pace = Pace::new(within);
    loop {
        match probe().await.done() {
            Ok(value) => return value,
            Err(seen) => match pace.next() {
                Some(interval) => tokio::time::sleep(interval).await,
                None => give_up(what, within, seen),
            },
        }
    }
}

/// Polls `probe` as [`eventually`] does, but answers `None` instead of
/// failing once `within` has passed: for callers that say themselves what
/// went wrong.
pub async fn poll<T, F>(within: Duration, mut probe: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let mut pace = Pace::new(within);
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        tokio::time::sleep(pace.next()?).await;
    }
}

/// [`eventually`] for code that does not run in an async runtime.
pub fn eventually_blocking<O: Outcome>(
    what: impl Display,
    within: Duration,
    mut probe: impl FnMut() -> O,
) -> O::Value {
    let mut pace = Pace::new(within);
    loop {
        match probe().done() {
            Ok(value) => return value,
            Err(seen) => match pace.next() {
                Some(interval) => std::thread::sleep(interval),
                None => give_up(what, within, seen),
            },
        }
    }
}

/// Polls `probe` as [`eventually_blocking`] does, but answers `None`
/// instead of failing once `within` has passed: for callers that say
/// themselves what went wrong.
pub fn poll_blocking<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let mut pace = Pace::new(within);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        std::thread::sleep(pace.next()?);
    }
}
