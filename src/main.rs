//! The `muster` command: parses arguments, loads config, sets up logging, runs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use muster::config::{Config, ENV_OVERRIDES};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// DNS-based service discovery: an authoritative DNS server for private namespaces.
///
/// Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C), 1 when the configuration is
/// invalid or a port cannot be bound, 2 for bad command-line usage, 3 when a frontend
/// (DNS or HTTP) stopped while running.
#[derive(Parser)]
#[command(version, after_help = env_help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS and HTTP (the default when no command is given).
    Serve {
        /// TOML configuration; without it, the embedded default (namespace `internal`,
        /// DNS on 127.0.0.1:8053, HTTP on 127.0.0.1:8054).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (non-zero if it is invalid).
    CheckConfig { file: PathBuf },
    /// Print the effective configuration (file plus environment overrides) as TOML.
    PrintConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn env_help() -> String {
    let mut help = String::from(
        "Environment:\n  MUSTER_LOG  log filter (default \"info\"), e.g. \"debug\" or \"muster=debug\"\n",
    );
    for (name, key) in ENV_OVERRIDES {
        help.push_str(&format!("  {name}  overrides {key}\n"));
    }
    help
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MUSTER_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let command = cli.command.unwrap_or(Command::Serve { config: None });
    let result = match command {
        Command::Serve { config } => load(config.as_deref()).and_then(serve),
        Command::CheckConfig { file } => load(Some(&file)).and_then(|config| {
            config.validate()?;
            println!("{}: ok", file.display());
            Ok(())
        }),
        Command::PrintConfig { config } => {
            load(config.as_deref()).map(|config| print!("{}", config.to_toml()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("muster: {error}");
            match error {
                muster::Error::Frontend(_) => ExitCode::from(3),
                _ => ExitCode::from(1),
            }
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, muster::Error> {
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    Ok(config)
}

fn serve(config: Config) -> Result<(), muster::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(muster::threads::control_plane)
        .build()
        .map_err(muster::Error::Bind)?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signal.cancel();
        });
        muster::run(config, shutdown).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
