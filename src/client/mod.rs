//! The client commands: `muster ls`, `show`, `register`, `deregister`, `health`, `drain`,
//! `undrain`, `watch` and `dig` talk to a running muster, as an operator or a script would,
//! through its REST API and its DNS port. docs/cli.md is their manual.
//!
//! What it owns: turning a command line into REST calls and a DNS query, and their
//! answers into a table (for people) or JSON (`--output json`, for scripts); exit codes
//! that say what went wrong ([`Failure`]). What it must not do: reach into the server's
//! library. The client sees muster only as any other client does (HTTP and DNS), so it
//! works against a muster of another build, and what `muster dig` explains is what the
//! API shows, checked against what DNS answered.
//!
//! - `settings.rs`: where the server is and which token to send (flag, environment,
//!   `~/.config/muster/client.toml`, in that order), the output format;
//! - `http.rs`: the REST calls, with the server's errors mapped to exit codes; `tls.rs`:
//!   the trust for an `https://` server (`--ca-file`, else the system's roots);
//! - `read.rs`: `ls` and `show`; `write.rs`: `register`, `deregister`, `health`, `drain`,
//!   `undrain`; `watch.rs`: the change stream (server-sent events);
//! - `dig.rs`: the DNS query (UDP, TCP on truncation) and its printout; `explain.rs`: the
//!   pure part, why each instance was served or left out;
//! - `table.rs`: column-aligned text.
//!
//! It lives in the binary, not the library: the server carries none of it, and it uses none
//! of the library's internals. Everything runs on one current-thread tokio runtime built per command: the HTTP client
//! (reqwest) is the one the health checker uses, and nothing outlives the command.

mod dig;
mod explain;
mod http;
mod read;
mod settings;
mod table;
mod tls;
mod watch;
mod write;

use std::process::ExitCode;

use clap::Subcommand;

use settings::Common;

/// The client's commands, flattened into `muster`'s own.
#[derive(Subcommand)]
pub enum Command {
    /// List namespaces; with NS, its services; with NS/SVC, the service's instances.
    Ls {
        /// What to list: nothing (namespaces), a namespace, or namespace/service.
        target: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Show a service (its answer policy and every instance) or one instance in full.
    Show {
        /// namespace/service or namespace/service/instance-id.
        target: String,
        #[command(flatten)]
        common: Common,
    },
    /// Register an instance, or replace its registration.
    Register(write::Register),
    /// Deregister an instance.
    Deregister {
        /// namespace/service/instance-id.
        target: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set an instance's reported health.
    Health {
        /// namespace/service/instance-id.
        target: String,
        /// `up` (healthy) or `down` (unhealthy).
        state: write::HealthState,
        #[command(flatten)]
        common: Common,
    },
    /// Take an instance out of DNS answers, keeping its registration and checks.
    Drain {
        /// namespace/service/instance-id.
        target: String,
        #[command(flatten)]
        common: Common,
    },
    /// Put a drained instance back into DNS answers.
    Undrain {
        /// namespace/service/instance-id.
        target: String,
        #[command(flatten)]
        common: Common,
    },
    /// Follow the registry's changes, a line per change, until interrupted.
    Watch {
        /// A namespace, or namespace/service; without it, every namespace.
        target: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Ask muster's DNS port for NAME and explain the answer: which instances were served,
    /// which were left out and why.
    Dig(dig::Dig),
}

/// Why a command failed, each with its exit code (docs/cli.md, "Exit codes").
#[derive(Debug)]
pub enum Failure {
    /// 1: the client's own configuration (client.toml, a token file) cannot be used.
    Local(String),
    /// 2: bad arguments, found before anything was sent (clap's own errors exit 2 too).
    Usage(String),
    /// 4: no answer from the server: refused, timed out, or not speaking HTTP or DNS.
    Unreachable(String),
    /// 5: the server refused the request (4xx: not found, invalid, unauthorized), with
    /// the status.
    Rejected(u16, String),
    /// 6: the server failed (5xx) or answered something muster does not answer.
    Server(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Local(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 4,
            Failure::Rejected(..) => 5,
            Failure::Server(_) => 6,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Local(m)
            | Failure::Usage(m)
            | Failure::Unreachable(m)
            | Failure::Rejected(_, m)
            | Failure::Server(m) => m,
        }
    }
}

/// Runs one client command; the exit code says how it went.
pub fn run(command: Command) -> ExitCode {
    quiet_pipes();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&Failure::Local(format!("cannot start a runtime: {error}"))),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

/// A reader that closes the pipe (`muster watch | head -3`) ends the command quietly, as
/// it ends other Unix tools, instead of a panic in `println!` (Rust ignores SIGPIPE).
pub fn quiet_pipes() {
    // SAFETY: restores the default action of one signal, before any other thread exists
    // and before anything is written.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("muster: {}", failure.message());
    ExitCode::from(failure.exit_code())
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Ls { target, common } => read::ls(&common.connect()?, target.as_deref()).await,
        Command::Show { target, common } => read::show(&common.connect()?, &target).await,
        Command::Register(register) => write::register(register).await,
        Command::Deregister { target, common } => {
            write::deregister(&common.connect()?, &target).await
        }
        Command::Health {
            target,
            state,
            common,
        } => write::health(&common.connect()?, &target, state).await,
        Command::Drain { target, common } => write::drain(&common.connect()?, &target, true).await,
        Command::Undrain { target, common } => {
            write::drain(&common.connect()?, &target, false).await
        }
        Command::Watch { target, common } => {
            watch::watch(&common.connect()?, target.as_deref()).await
        }
        Command::Dig(dig) => dig::dig(dig).await,
    }
}

/// JSON for scripts: pretty, one document per command (a line per event for `watch`).
fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `ns`, `ns/svc` or `ns/svc/id` split; an instance id may itself contain `/`.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub service: Option<String>,
    pub id: Option<String>,
}

impl Target {
    /// Parses a target; `want` is how many parts are required (1 to 3) and `max` allowed.
    fn parse(text: &str, want: usize, max: usize) -> Result<Self, Failure> {
        let mut parts = text.splitn(3, '/').map(str::to_owned);
        let namespace = parts.next().unwrap_or_default();
        let service = parts.next();
        let id = parts.next();
        let given = 1 + usize::from(service.is_some()) + usize::from(id.is_some());
        let shape = [
            "namespace",
            "namespace/service",
            "namespace/service/instance-id",
        ];
        let empty =
            namespace.is_empty() || service.as_deref() == Some("") || id.as_deref() == Some("");
        if empty || given < want || given > max {
            let wanted = if want == max {
                shape[want - 1].to_owned()
            } else {
                shape[want - 1..max].join(" or ")
            };
            return Err(Failure::Usage(format!("{text:?}: expected {wanted}")));
        }
        Ok(Self {
            namespace,
            service,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_on_the_first_two_slashes() {
        let t = Target::parse("prod/web/task/abc:1", 3, 3).unwrap();
        assert_eq!(t.namespace, "prod");
        assert_eq!(t.service.as_deref(), Some("web"));
        assert_eq!(t.id.as_deref(), Some("task/abc:1"));
        assert_eq!(Target::parse("prod", 1, 2).unwrap().service, None);
    }

    #[test]
    fn a_target_of_the_wrong_shape_is_a_usage_error() {
        for (text, want, max) in [
            ("prod", 3, 3),
            ("prod/web", 1, 1),
            ("prod//x", 3, 3),
            ("", 1, 2),
        ] {
            match Target::parse(text, want, max) {
                Err(Failure::Usage(message)) => assert!(message.contains("expected"), "{message}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
