use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use menshen_agent::config::{self, Overrides, Token};
use menshen_agent::metrics::{self, Metrics};
use menshen_agent::push::Pusher;
use menshen_agent::{daemon, observe_once, push_once};
use tracing::{error, info};

/// Tells menshen which OpenVPN gateways and obfs4 bridges run on this host,
/// and how loaded and healthy they are.
///
/// The token comes from MENSHEN_AGENT_TOKEN, MENSHEN_AGENT_TOKEN_FILE or the
/// configuration's token_file (in that order); it is never a flag, since
/// flags are visible to every user of the host. Logging: RUST_LOG (e.g.
/// `debug`, `info,menshen_agent=debug`).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "MENSHEN_AGENT_CONFIG",
        default_value = "/etc/menshen-agent.toml"
    )]
    config: PathBuf,
    /// menshen's base URL; overrides menshen_url of the file.
    #[arg(long, env = "MENSHEN_AGENT_URL")]
    url: Option<String>,
    /// Look and push once, then exit (non-zero when the push failed).
    #[arg(long)]
    once: bool,
    /// With --once: print the JSON that would be sent and contact nobody.
    #[arg(long, requires = "once")]
    dry_run: bool,
    /// Serve Prometheus metrics (the agent's pushes and health, OpenVPN's
    /// clients under the OpenVPN exporter's names) and /healthz on this
    /// address, e.g. 127.0.0.1:9176; overrides metrics_listen of the file.
    #[arg(long, env = "MENSHEN_AGENT_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log line format.
    #[arg(long, env = "MENSHEN_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().expect("static filter"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);

    let overrides = Overrides {
        menshen_url: cli.url.clone(),
        metrics_listen: cli.metrics_listen,
        token: std::env::var("MENSHEN_AGENT_TOKEN")
            .ok()
            .and_then(|t| Token::new(&t)),
        token_file: std::env::var_os("MENSHEN_AGENT_TOKEN_FILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    };
    let config = match config::load(&cli.config, &overrides) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("menshen-agent: configuration refused: {e}");
            return ExitCode::from(2);
        }
    };

    // One thread does everything: the agent waits on a few sockets.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("menshen-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if cli.dry_run {
            let report = observe_once(&config).await;
            match serde_json::to_string_pretty(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    error!("cannot encode the report: {e}");
                    return ExitCode::FAILURE;
                }
            }
            return ExitCode::SUCCESS;
        }
        let pusher = match Pusher::new(&config) {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "menshen-agent: configuration refused: {}: {e}",
                    cli.config.display()
                );
                return ExitCode::from(2);
            }
        };
        if cli.once {
            return match push_once(&config, &pusher).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("push failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let metrics = Arc::new(Metrics::new(config.check_interval));
        if let Some(addr) = config.metrics_listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let address = listener
                        .local_addr()
                        .map_or_else(|_| addr.to_string(), |a| a.to_string());
                    info!(address, "metrics listening");
                    tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
                }
                Err(e) => {
                    error!("cannot listen for metrics on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        info!(
            gateways = config.openvpn.len(),
            bridges = config.obfs4.len(),
            "menshen-agent started; reporting to {}",
            config.menshen_url.as_ref().map_or("", |u| u.as_str())
        );
        daemon::run(config, pusher, metrics, shutdown).await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGTERM or SIGINT. The handlers are installed now, so a
/// signal that arrives before the loop first waits is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}
