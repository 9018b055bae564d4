//! `[auth]`: who may use the HTTP APIs, and how fast each may write.
//!
//! The raw table lives here; turning it into checkable credentials (secrets read from
//! files or the environment, scopes and action patterns compiled) is
//! `api::auth::Credentials::from_config`, which [`AuthConfig::problems`] calls so that
//! `muster check-config` reports a bad scope or an unreadable secret file.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[auth]`: credentials for the REST and Cloud Map APIs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Serve both APIs without credentials on a listener that is not loopback. Without
    /// credentials and without this, muster refuses to start on such a listener. It has
    /// no effect once any credential is configured: then every request needs one.
    pub allow_anonymous: bool,
    /// Writes per second each principal may make (token-bucket refill). Anonymous
    /// clients, and requests that fail authentication, are counted per source address.
    /// 0 turns the limit off.
    pub write_rate: u32,
    /// Writes a principal may make at once before `write_rate` applies.
    pub write_burst: u32,
    /// Bearer tokens for the REST API (and `/metrics` on the HTTP listener).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenConfig>,
    /// AWS access keys for the Cloud Map API (SigV4).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_keys: Vec<AccessKeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: false,
            write_rate: 500,
            write_burst: 1000,
            tokens: Vec::new(),
            access_keys: Vec::new(),
        }
    }
}

/// `[[auth.tokens]]`: one REST bearer token, stored only as its SHA-256.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: the principal in the audit log.
    pub name: String,
    /// Hex SHA-256 of the token (`muster token new NAME` prints it).
    pub sha256: String,
    /// What it may do: `read`, `register`, `health`, each optionally limited to
    /// `KIND:NAMESPACE-GLOB/SERVICE-GLOB` (e.g. `register:prod/web-*`), or `admin`.
    pub scopes: Vec<String>,
}

/// `[[auth.access_keys]]`: one AWS access key for the Cloud Map API.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The access key id clients sign with (`AWS_ACCESS_KEY_ID`).
    pub id: String,
    /// The secret, inline. `print-config` shows it as `"<redacted>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// A file whose content (trailing newline removed) is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable that holds the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// What the key may do; no entry: nothing (every call is `AccessDeniedException`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<PermissionConfig>,
}

/// `[[auth.access_keys.allow]]`: actions allowed on namespaces, IAM style.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    /// `servicediscovery:DiscoverInstances`, `servicediscovery:Get*`, `servicediscovery:*`.
    pub actions: Vec<String>,
    /// Namespace name globs the actions apply to.
    #[serde(default = "every_namespace")]
    pub namespaces: Vec<String>,
}

fn every_namespace() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A secret given inline: never printed, by `Debug` or by `print-config`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What `print-config` writes instead of an inline secret; refused as a secret, so a
    /// printed configuration fed back fails loudly rather than with a wrong secret.
    pub const PLACEHOLDER: &'static str = "<redacted>";

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the signature check.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PLACEHOLDER)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(Self::PLACEHOLDER)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl AuthConfig {
    /// Whether any credential (token or access key) is configured: without one, the APIs
    /// are open, which muster allows only on a loopback listener.
    pub fn has_credentials(&self) -> bool {
        !self.tokens.is_empty() || !self.access_keys.is_empty()
    }

    /// Problems with the table, and with serving the APIs on `listen` without credentials.
    pub(super) fn problems(&self, listen: SocketAddr) -> Vec<String> {
        let mut problems = match crate::api::auth::Credentials::from_config(self) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        if self.write_rate > 0 && self.write_burst == 0 {
            problems.push("auth.write_burst: must be at least 1 when write_rate is set".into());
        }
        if !self.has_credentials() && !self.allow_anonymous && !listen.ip().is_loopback() {
            problems.push(format!(
                "auth.allow_anonymous: [http] listen {listen} is not a loopback address and no \
                 credentials are configured; add [[auth.tokens]] and [[auth.access_keys]], or \
                 set auth.allow_anonymous = true to serve the APIs to anyone who can reach it"
            ));
        }
        problems
    }
}
