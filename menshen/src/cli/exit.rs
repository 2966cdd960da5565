//! How a command ends: its error said once, and the exit status `--help`
//! promises: 0 done; 1 refused or failed; 2 invalid command line or input.

use std::future::Future;
use std::process::ExitCode;

/// Input an operator got wrong: exit status 2, like a bad command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// The error for `message`, ready for `?` or `return Err(...)`.
    pub fn err(message: impl Into<String>) -> anyhow::Error {
        Invalid(message.into()).into()
    }
}

/// Marks a failure as the operator's input being wrong (exit status 2),
/// keeping its message (with its causes).
pub trait OrInvalid<T> {
    fn or_invalid(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> OrInvalid<T> for Result<T, E> {
    fn or_invalid(self) -> anyhow::Result<T> {
        self.map_err(|e| Invalid::err(format!("{e:#}")))
    }
}

/// Exit status 2 for invalid input, 1 for anything else.
fn exit_code(err: &anyhow::Error) -> ExitCode {
    let invalid = err.downcast_ref::<Invalid>().is_some()
        || err
            .downcast_ref::<crate::config::file::ConfigError>()
            .is_some()
        || matches!(
            err.downcast_ref::<crate::store::StoreError>(),
            Some(crate::store::StoreError::Invalid { .. })
        );
    ExitCode::from(if invalid { 2 } else { 1 })
}

/// Runs `command` on a new runtime, after `setup` (which sets up logs, and
/// may need the runtime: the gRPC trace exporter does). What `setup`
/// returns is dropped after the command and outside the runtime (it flushes
/// traces). On failure the error is said once on stderr, as a log line when
/// logs are JSON, else as `error: …`, with the status of [`exit_code`].
pub fn run<G>(
    json_logs: bool,
    setup: impl FnOnce() -> G,
    command: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let guard = runtime.block_on(async { setup() });
    let result = runtime.block_on(command);
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if json_logs {
                tracing::error!("{err:#}");
            } else {
                eprintln!("error: {err:#}");
            }
            exit_code(&err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_keeps_its_message_and_causes() {
        let err: anyhow::Result<()> =
            Err(anyhow::anyhow!("no such file").context("cannot read x.json"));
        let err = err.or_invalid().unwrap_err();
        assert_eq!(err.to_string(), "cannot read x.json: no such file");
        assert_eq!(exit_code(&err), ExitCode::from(2));
        assert_eq!(exit_code(&anyhow::anyhow!("in use")), ExitCode::from(1));
    }
}
