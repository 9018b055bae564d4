//! The `muster` command: parses arguments, loads config, sets up logging, runs the server;
//! or, for the client commands (`ls`, `register`, `dig`...), hands over to `client/`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use muster::config::{Config, ENV_OVERRIDES};
use muster::reload::Reloader;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod client;

/// DNS-based service discovery: an authoritative DNS server for private namespaces.
///
/// Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C), 1 when the configuration is
/// invalid or a port cannot be bound, 2 for bad command-line usage, 3 when a frontend
/// (DNS or HTTP) stopped while running or a background task (health checks, a source)
/// kept panicking. SIGHUP reloads the configuration file (TLS
/// certificates, credentials and file sources follow it).
///
/// The client commands (ls, show, register, deregister, health, drain, undrain, watch, dig)
/// talk
/// to a running muster and exit 0 when it did what was asked, 1 when the client's own config
/// or token file cannot be used, 2 for bad usage, 4 when the server cannot be reached, 5
/// when it refused the request (4xx), 6 when it failed (5xx); see docs/cli.md.
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
    /// Print the effective configuration (file plus environment overrides) as TOML. An
    /// inline access-key secret is printed as "<redacted>" (secret_file and secret_env
    /// are printed as they are).
    PrintConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// REST API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Move the API-owned state between the local log and etcd (`[etcd]` in the file).
    Etcd {
        #[command(subcommand)]
        command: EtcdCommand,
    },
    /// Boxed: the client's arguments are far larger than the server commands'.
    #[command(flatten)]
    Client(Box<client::Command>),
    /// Print a shell completion script: `muster completions bash > /etc/bash_completion.d/muster`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum EtcdCommand {
    /// Copy data_dir's log into the etcd prefix, which must be empty. Stop muster first.
    Import {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write the etcd prefix into data_dir, which must hold no log.
    Export {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a random token: prints the token on the first line, then the
    /// [[auth.tokens]] table (its name, SHA-256 and scopes) to add under [auth].
    ///
    /// muster stores only the hash: the token is shown once. Add the table to the
    /// configuration and send muster SIGHUP (or restart it); clients send
    /// `Authorization: Bearer TOKEN`.
    New {
        /// Who holds the token: its principal in the audit log (A-Z, a-z, 0-9, . _ - @).
        name: String,
        /// A scope, repeatable: read, register, health (each optionally limited as
        /// KIND:NAMESPACE-GLOB/SERVICE-GLOB, e.g. register:prod/web-*), or admin.
        #[arg(long = "scope", default_value = "read")]
        scopes: Vec<String>,
    },
}

fn env_help() -> String {
    let mut help = format!(
        "Environment:\n  MUSTER_LOG  log filter (default {:?}: muster at info, hickory's per-packet logs off), e.g. \"debug\" or \"info,muster=debug\"\n",
        muster::logging::DEFAULT_FILTER
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
                .unwrap_or_else(|_| EnvFilter::new(muster::logging::DEFAULT_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let command = cli.command.unwrap_or(Command::Serve { config: None });
    let result = match command {
        Command::Serve { config } => load(config.as_deref()).and_then(|c| serve(c, config)),
        Command::CheckConfig { file } => load(Some(&file)).and_then(|config| {
            config.settings()?;
            println!("{}: ok", file.display());
            Ok(())
        }),
        Command::PrintConfig { config } => {
            load(config.as_deref()).map(|config| print!("{}", config.to_toml()))
        }
        Command::Etcd { command } => migrate(command),
        Command::Token(TokenCommand::New { name, scopes }) => {
            return new_token(&name, &scopes);
        }
        Command::Client(command) => return client::run(*command),
        Command::Completions { shell } => {
            client::quiet_pipes();
            clap_complete::generate(shell, &mut Cli::command(), "muster", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("muster: {error}");
            match error {
                muster::Error::Frontend(_) | muster::Error::TaskDied(_) => ExitCode::from(3),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// `muster etcd import|export`: one run on a small runtime.
#[cfg(feature = "etcd")]
fn migrate(command: EtcdCommand) -> Result<(), muster::Error> {
    use muster::store::etcd;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(muster::Error::Bind)?;
    let failed = |e: etcd::MigrateError| muster::Error::Migrate(e.to_string());
    match command {
        EtcdCommand::Import { config } => {
            let config = load(Some(&config))?;
            let written = runtime.block_on(etcd::import(&config)).map_err(failed)?;
            println!("imported {written} records into etcd");
        }
        EtcdCommand::Export { config } => {
            let config = load(Some(&config))?;
            let logged = runtime.block_on(etcd::export(&config)).map_err(failed)?;
            println!(
                "exported {logged} changes into {}",
                config.data_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(not(feature = "etcd"))]
fn migrate(_: EtcdCommand) -> Result<(), muster::Error> {
    let problem = "muster etcd: this muster was built without the `etcd` feature".to_owned();
    Err(muster::config::ConfigError::Invalid(vec![problem]).into())
}

/// `muster token new`: the token, then its config table; bad arguments exit 2.
fn new_token(name: &str, scopes: &[String]) -> ExitCode {
    match muster::api::auth::issue_token(name, scopes) {
        Ok((token, entry)) => {
            let table = serde_json::json!({"auth": {"tokens": [entry]}});
            let table = toml::to_string(&table).expect("a token entry serializes to TOML");
            println!("{token}\n\n{table}");
            eprintln!(
                "muster: the first line is the token; muster keeps only its SHA-256. Add the \
                 [[auth.tokens]] table to the configuration and send muster SIGHUP."
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("muster: {}", problems.join("\n  "));
            ExitCode::from(2)
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

fn serve(config: Config, path: Option<PathBuf>) -> Result<(), muster::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(muster::threads::control_plane)
        .build()
        .map_err(muster::Error::Bind)?;
    runtime.block_on(async {
        // Before anything is bound: a signal that comes while muster starts is kept for
        // the handler, instead of taking its default action (which ends the process).
        let signals = Signals::install().map_err(muster::Error::Bind)?;
        let shutdown = CancellationToken::new();
        let running = muster::start(config, shutdown.clone()).await?;
        tokio::spawn(handle_signals(signals, shutdown, running.reloader(), path));
        running.wait().await
    })
}

/// The signals muster handles, listened to from the start.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGTERM and Ctrl-C shut down; SIGHUP reloads the configuration file.
async fn handle_signals(
    mut signals: Signals,
    shutdown: CancellationToken,
    reloader: Reloader,
    path: Option<PathBuf>,
) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => {
                let reloaded = load(path.as_deref())
                    .and_then(|config| reloader.reload(config).map_err(Into::into));
                if let Err(error) = reloaded {
                    tracing::error!(%error, "SIGHUP: the configuration was not reloaded");
                }
            }
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
