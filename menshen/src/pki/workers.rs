//! Where client certificates are made: a few threads of their own, behind
//! a bounded queue, at a lower scheduling priority than the threads that
//! serve requests. A flood of certificate requests then queues here (and is
//! refused once the queue is full) instead of taking the CPU from the
//! lists, which are answered on the request threads.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How much less the issuing threads get of a busy CPU than the request
/// threads: a nice value, 0 to 19 (10 is about a tenth of the share).
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: try again later.
    Busy,
    /// The job panicked.
    Failed,
}

/// A fixed set of threads running jobs from a bounded queue.
#[derive(Debug)]
pub struct Workers {
    queue: SyncSender<Job>,
    threads: usize,
    capacity: usize,
}

impl Workers {
    /// `threads` threads (at least one), and room for `queued` jobs waiting
    /// for one. The threads end when the `Workers` is dropped and the queue
    /// has run empty.
    pub fn new(name: &str, threads: usize, queued: usize) -> std::io::Result<Workers> {
        let threads = threads.max(1);
        let (queue, jobs) = mpsc::sync_channel::<Job>(queued);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || run(&jobs))?;
        }
        Ok(Workers {
            queue,
            threads,
            capacity: queued,
        })
    }

    /// Runs `job` on one of the threads and waits for its result;
    /// [`Refused::Busy`] at once when `queued` jobs are waiting already.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refused> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                return Err(Refused::Busy);
            }
        }
        // A job that panicked drops its sender: no result.
        result.await.map_err(|_| Refused::Failed)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

fn run(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.recv()
        };
        match job {
            Ok(job) => {
                // One failing job must not take the thread with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// Gives this thread (only: on Linux a nice value is per thread) a lower
/// share of a busy CPU.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority only read their arguments; raising
    // the nice value of one's own thread is always permitted.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the priority of an issuing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_and_a_full_queue_refuses_at_once() {
        let workers = Workers::new("test", 1, 1).unwrap();
        assert_eq!(workers.run(|| 6 * 7).await, Ok(42));

        // Hold the one thread, then fill the one place in the queue.
        let (release, held) = channel::<()>();
        let (started, running) = channel::<()>();
        let first = workers.run(move || {
            started.send(()).unwrap();
            held.recv().unwrap();
            1
        });
        tokio::pin!(first);
        tokio::select! {
            _ = &mut first => unreachable!("held"),
            _ = tokio::task::spawn_blocking(move || running.recv().unwrap()) => {}
        }
        let queued = tokio::time::timeout(Duration::from_millis(20), workers.run(|| 2)).await;
        assert!(queued.is_err(), "queued, waiting");
        assert_eq!(workers.run(|| 3).await, Err(Refused::Busy));
        release.send(()).unwrap();
        assert_eq!(first.await, Ok(1));
        // The queued job runs, and then there is room again.
        let mut again = Err(Refused::Busy);
        for _ in 0..100 {
            again = workers.run(|| 4).await;
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(again, Ok(4));
    }

    #[tokio::test]
    async fn a_panicking_job_leaves_the_thread_working() {
        let workers = Workers::new("test", 1, 4).unwrap();
        assert_eq!(
            workers.run(|| panic!("boom")).await,
            Err::<(), _>(Refused::Failed)
        );
        assert_eq!(workers.run(|| "still here").await, Ok("still here"));
    }
}
