//! The `menshen` command line: the command tree here, one module per
//! command (`serve`, `check_config`, `import`, `location`, `resource` for
//! gateways and bridges, `agent`, `invite`, `admin`, `pki`, `probe`, `verify`), and what they
//! share: `args` (the store, the signing key, value parsers), `input`
//! (flags or JSON, field errors), `table` (lists as text) and `exit` (how a
//! command ends, and its exit status).

mod admin;
mod agent;
mod args;
mod check_config;
mod examples;
mod exit;
mod import;
mod input;
mod invite;
mod location;
mod pki;
mod probe;
mod resource;
mod serve;
mod table;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use args::{KeyArgs, StoreArgs};
pub use exit::Invalid;

use crate::store::ResourceKind;
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "menshen",
    version,
    about = "The provider API of LEAP VPN",
    after_help = "Commands that change things write the audit log as cli:$USER. On \
Postgres replicas see a change at once; a server on SQLite at its next \
periodic reload (--reload-interval).

Exit status: 0 done; 1 refused or failed (not found, in use, store \
unreachable); 2 invalid command line or input."
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "MENSHEN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Log level, unless RUST_LOG says otherwise.
    #[arg(long, global = true, env = "MENSHEN_LOG_LEVEL", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the LEAP v5 API.
    Serve(Box<serve::ServeArgs>),
    /// Check a provider file and exit: 0 if it is valid.
    CheckConfig(check_config::CheckConfigArgs),
    /// Turn a LEAP API v3 eip-service.json (and provider.json) into a
    /// provider file: locations, hand-defined gateways and bridges, OpenVPN
    /// options. Check the result, then serve it with --config.
    Import(import::ImportArgs),
    /// Manage locations: where gateways and bridges are.
    #[command(subcommand)]
    Location(location::LocationCommand),
    /// Manage gateways: list them with their status, define them by hand,
    /// put them in maintenance.
    #[command(subcommand, after_help = resource::GATEWAY_HELP)]
    Gateway(resource::GatewayCommand),
    /// Manage bridges: list them with their status, define them by hand,
    /// put them in maintenance.
    #[command(subcommand, after_help = resource::BRIDGE_HELP)]
    Bridge(resource::BridgeCommand),
    /// Manage the agents that report gateways and bridges.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manage invite tokens, which let clients see invite-only gateways and
    /// bridges (those with a `bucket`).
    ///
    /// Replicas on Postgres see a change at once; a server on SQLite at its
    /// next periodic reload (--reload-interval).
    #[command(subcommand)]
    Invite(invite::InviteCommand),
    /// Operators' access to the admin API (/admin/v1).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// A provider's key material: CAs and the signing key.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Check every gateway and bridge from outside, at --probe-interval, and
    /// store what was found, until stopped: OpenVPN gateways answer a
    /// client's hard reset (UDP; TCP after connecting), obfs4 bridges an
    /// obfs4 handshake with their cert. One that fails --probe-failures
    /// checks in a row is dysfunctional, and replicas leave it out of client
    /// lists (unless serve --probe-keep-dysfunctional). Run one beside the
    /// replicas, on the same store, or use serve --probe instead.
    Probe(probe::ProbeCommandArgs),
    /// Fetch a client answer (/provider.json, /api/5/service,
    /// /api/5/gateways, /api/5/bridges) and check its x-menshen-signature:
    /// made by a key given (or published in /provider.json), over the exact
    /// body, not expired. Exit status 0 when it holds, 1 when not.
    Verify(verify::VerifyArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let matches = examples::attach(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let (format, level) = (cli.log_format, cli.log_level);
    // Only `serve` sends traces; their exporter is made inside the runtime.
    let traces = match &cli.command {
        Command::Serve(args) => Some(args.traces()),
        _ => None,
    };
    exit::run(
        format == LogFormat::Json,
        || telemetry::init(format, &level, traces.as_ref()),
        dispatch(cli.command),
    )
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::CheckConfig(args) => check_config::run(args),
        Command::Import(args) => import::run(args),
        Command::Location(command) => location::run(command).await,
        Command::Gateway(command) => resource::run(ResourceKind::Gateway, command).await,
        Command::Bridge(command) => resource::run(ResourceKind::Bridge, command).await,
        Command::Agent(command) => agent::run(command).await,
        Command::Invite(command) => invite::run(command).await,
        Command::Admin(command) => admin::run(command).await,
        Command::Pki(command) => pki::run(command),
        Command::Probe(args) => probe::run(args).await,
        Command::Verify(args) => verify::run(args).await,
    }
}

/// The command line `menshen ARGS`, parsed, for the commands' tests.
#[cfg(test)]
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("menshen").chain(args.iter().copied()))
}
