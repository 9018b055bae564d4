//! Where the server is, which token to send, how to print: each from its flag, else its
//! environment variable, else the client config file, else the default (docs/cli.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Failure;
use super::http::Api;

/// The embedded default's HTTP address, as `cargo run --release` serves it.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8054";
/// The embedded default's DNS address.
pub const DEFAULT_DNS: &str = "127.0.0.1:8053";
/// A token file or client config larger than this is not one.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The flags every client command takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// muster's HTTP address, http:// or https:// [default: `server` in the client
    /// config, else http://127.0.0.1:8054].
    #[arg(long, env = "MUSTER_ADDR", value_name = "URL")]
    server: Option<String>,
    /// PEM certificates to trust for an https:// server (a self-signed one, or a private
    /// CA's) instead of the system's roots.
    #[arg(long, env = "MUSTER_CA_FILE", value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// A REST bearer token. Prefer MUSTER_TOKEN or --token-file: arguments show in `ps`.
    #[arg(long, env = "MUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token (used when no --token or MUSTER_TOKEN is given).
    #[arg(long, env = "MUSTER_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The client config file [default: $XDG_CONFIG_HOME/muster/client.toml, else
    /// ~/.config/muster/client.toml, read if it exists].
    #[arg(long, env = "MUSTER_CLIENT_CONFIG", value_name = "PATH")]
    client_config: Option<PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
    /// How long to wait for each answer from the server.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
}

/// How a command prints its result.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// `client.toml`: what the flags and environment leave unsaid.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    /// muster's HTTP address.
    server: Option<String>,
    /// A file holding the bearer token.
    token_file: Option<PathBuf>,
    /// muster's DNS address, for `muster dig`.
    dns: Option<String>,
    /// PEM certificates to trust for an https:// server.
    ca_file: Option<PathBuf>,
}

/// The settings after every source was consulted.
pub struct Settings {
    pub server: String,
    /// The certificates an https:// server is checked against; the system's without it.
    pub ca_file: Option<PathBuf>,
    pub token: Option<String>,
    /// The config file's DNS address, when it has one.
    pub dns: Option<String>,
    pub output: Output,
    pub timeout: Duration,
}

impl Common {
    /// Flags, then environment (clap read both), then the client config, then defaults.
    pub fn resolve(&self) -> Result<Settings, Failure> {
        let file = self.client_file()?;
        let server = self
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let token = match (
            &self.token,
            self.token_file.as_ref().or(file.token_file.as_ref()),
        ) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(read_token(path)?),
            (None, None) => None,
        };
        Ok(Settings {
            server: base_url(&server)?,
            ca_file: self.ca_file.clone().or(file.ca_file),
            token: token.filter(|t| !t.is_empty()),
            dns: file.dns,
            output: self.output,
            timeout: self.timeout,
        })
    }

    /// The REST client these settings describe.
    pub fn connect(&self) -> Result<Api, Failure> {
        Api::new(self.resolve()?)
    }

    fn client_file(&self) -> Result<ClientFile, Failure> {
        let (path, required) = match &self.client_config {
            Some(path) => (path.clone(), true),
            None => match default_config_path() {
                Some(path) => (path, false),
                None => return Ok(ClientFile::default()),
            },
        };
        if !required && !path.exists() {
            return Ok(ClientFile::default());
        }
        let text = read_small(&path)?;
        toml::from_str(&text).map_err(|e| Failure::Local(format!("{}: {e}", path.display())))
    }
}

/// `$XDG_CONFIG_HOME/muster/client.toml`, else `$HOME/.config/muster/client.toml`.
fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("muster").join("client.toml"))
}

fn read_token(path: &Path) -> Result<String, Failure> {
    let token = read_small(path)?.trim().to_owned();
    if token.is_empty() {
        return Err(Failure::Local(format!(
            "{}: the token file is empty",
            path.display()
        )));
    }
    Ok(token)
}

fn read_small(path: &Path) -> Result<String, Failure> {
    let failed = |e: std::io::Error| Failure::Local(format!("{}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(failed)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Failure::Local(format!(
            "{}: {size} bytes, more than a client file holds ({MAX_FILE_BYTES})",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(failed)
}

/// `host:port`, `http://host:port[/]` or `https://host:port[/]` → the scheme (http by
/// default) and `host:port`.
fn base_url(server: &str) -> Result<String, Failure> {
    let server = server.trim();
    let (scheme, url) = match server.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest.trim_end_matches('/')),
        Some(_) => {
            return Err(Failure::Usage(format!(
                "{server}: not an http:// or https:// address"
            )));
        }
        None => ("http", server.trim_end_matches('/')),
    };
    if url.is_empty() || url.contains('/') {
        return Err(Failure::Usage(format!(
            "{server:?}: expected host:port, http://host:port or https://host:port"
        )));
    }
    Ok(format!("{scheme}://{url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_take_either_form() {
        assert_eq!(base_url("127.0.0.1:8054").unwrap(), "http://127.0.0.1:8054");
        assert_eq!(base_url("http://m:80/").unwrap(), "http://m:80");
        assert_eq!(base_url("https://m:443/").unwrap(), "https://m:443");
        for bad in ["ftp://m", "http://m/v1", "https://", ""] {
            assert!(matches!(base_url(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }
}
