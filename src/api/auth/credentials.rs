//! Credentials as the API checks them, built from `[auth]`: tokens by the SHA-256 of
//! their value, access keys by id with their secrets read, scopes and action patterns
//! compiled. Building reports every problem at once, with the config key at fault, so
//! the same function serves `muster check-config` and a reload.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::api::cloudmap::OPERATIONS;
use crate::config::{AccessKeyConfig, AuthConfig, PermissionConfig, Secret, TokenConfig};

/// Prefix of the tokens `muster token new` makes, so a leaked one can be recognised.
pub(super) const TOKEN_PREFIX: &str = "mst_";
/// Longest token accepted in a request (ours are 47 characters).
pub const MAX_TOKEN: usize = 256;
/// Longest secret accepted (AWS's are 40 characters).
const MAX_SECRET: usize = 1024;

/// Every credential in `[auth]`, ready to check requests against.
#[derive(Debug, Default)]
pub struct Credentials {
    tokens: HashMap<[u8; 32], Arc<Token>>,
    keys: HashMap<String, Arc<AccessKey>>,
    /// The write limit: (writes per second, burst), none when off.
    pub rate: Option<(f64, f64)>,
}

/// A REST bearer token: its name and what it may do.
#[derive(Debug)]
pub struct Token {
    pub name: String,
    scopes: Vec<Scope>,
}

/// What a REST token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// GET the namespaces, services and instances (and `/metrics`).
    Read,
    /// Register and deregister instances.
    Register,
    /// Set health, send heartbeats.
    Health,
    /// Everything.
    Admin,
}

#[derive(Debug)]
struct Scope {
    kind: ScopeKind,
    /// Namespace and service globs; none: every one.
    limit: Option<(GlobMatcher, GlobMatcher)>,
}

/// An AWS access key for the Cloud Map API.
pub struct AccessKey {
    pub id: String,
    secret: Vec<u8>,
    permissions: Vec<Permission>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).finish()
    }
}

/// Actions (Cloud Map operation names) allowed on namespaces.
#[derive(Debug)]
struct Permission {
    actions: GlobSet,
    namespaces: GlobSet,
}

impl Credentials {
    /// Builds the credentials of `config`, reading secret files and variables.
    pub fn from_config(config: &AuthConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut credentials = Credentials {
            rate: (config.write_rate > 0)
                .then(|| (f64::from(config.write_rate), f64::from(config.write_burst))),
            ..Credentials::default()
        };
        for (i, token) in config.tokens.iter().enumerate() {
            let at = format!("auth.tokens[{i}]");
            match build_token(token, &at) {
                Ok((hash, token)) => {
                    if credentials.tokens.values().any(|t| t.name == token.name) {
                        problems.push(format!("{at}.name: {:?} is used twice", token.name));
                    }
                    if credentials.tokens.insert(hash, Arc::new(token)).is_some() {
                        problems.push(format!("{at}.sha256: the same token is configured twice"));
                    }
                }
                Err(errors) => problems.extend(errors),
            }
        }
        for (i, key) in config.access_keys.iter().enumerate() {
            let at = format!("auth.access_keys[{i}]");
            match build_key(key, &at) {
                Ok(key) => {
                    let id = key.id.clone();
                    if credentials.keys.insert(id.clone(), Arc::new(key)).is_some() {
                        problems.push(format!("{at}.id: {id:?} is configured twice"));
                    }
                }
                Err(errors) => problems.extend(errors),
            }
        }
        if problems.is_empty() {
            Ok(credentials)
        } else {
            Err(problems)
        }
    }

    /// No credential at all: the APIs are open to anyone who reaches the listener.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.keys.is_empty()
    }

    /// The token whose value is `presented`.
    pub fn token(&self, presented: &str) -> Option<&Arc<Token>> {
        self.tokens.get(&hash_token(presented))
    }

    pub fn access_key(&self, id: &str) -> Option<&Arc<AccessKey>> {
        self.keys.get(id)
    }
}

impl Token {
    /// Whether the token may do `kind` to service `service` of `namespace`.
    pub fn allows(&self, kind: ScopeKind, namespace: &str, service: &str) -> bool {
        self.scopes(kind).any(|scope| match &scope.limit {
            None => true,
            Some((ns, svc)) => ns.is_match(namespace) && svc.is_match(service),
        })
    }

    /// Whether the token may do `kind` to some service of `namespace`.
    pub fn allows_in(&self, kind: ScopeKind, namespace: &str) -> bool {
        self.scopes(kind).any(|scope| match &scope.limit {
            None => true,
            Some((ns, _)) => ns.is_match(namespace),
        })
    }

    /// Whether the token may do `kind` everywhere (`read` for `/metrics`).
    pub fn allows_everywhere(&self, kind: ScopeKind) -> bool {
        self.scopes(kind).any(|scope| scope.limit.is_none())
    }

    /// Whether the token may do `kind` anywhere at all.
    pub fn has(&self, kind: ScopeKind) -> bool {
        self.scopes(kind).next().is_some()
    }

    fn scopes(&self, kind: ScopeKind) -> impl Iterator<Item = &Scope> {
        self.scopes
            .iter()
            .filter(move |s| s.kind == kind || s.kind == ScopeKind::Admin)
    }
}

impl AccessKey {
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether the key may call `operation` on `namespace`.
    pub fn allows(&self, operation: &str, namespace: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p.actions.is_match(operation) && p.namespaces.is_match(namespace))
    }

    /// Whether the key may call `operation` on some namespace.
    pub fn allows_somewhere(&self, operation: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p.actions.is_match(operation))
    }
}

/// SHA-256 of a token's value: what the config stores and requests are looked up by.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: `mst_` and 32 bytes from the operating system, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source works");
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("{TOKEN_PREFIX}{encoded}")
}

/// A new token for `name` with `scopes`, and its `[[auth.tokens]]` entry; the scopes and
/// name are checked as the configuration would check them.
pub fn issue_token(name: &str, scopes: &[String]) -> Result<(String, TokenConfig), Vec<String>> {
    let token = new_token();
    let config = TokenConfig {
        name: name.to_owned(),
        sha256: super::sigv4::hex(&hash_token(&token)),
        scopes: scopes.to_vec(),
    };
    build_token(&config, "token")?;
    Ok((token, config))
}

fn build_token(config: &TokenConfig, at: &str) -> Result<([u8; 32], Token), Vec<String>> {
    let mut problems = Vec::new();
    let name = &config.name;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !name_ok {
        problems.push(format!(
            "{at}.name: {name:?} is not 1-64 of A-Z, a-z, 0-9, '.', '_', '-', '@'"
        ));
    }
    let hash = parse_hash(&config.sha256);
    if hash.is_none() {
        problems.push(format!(
            "{at}.sha256: not 64 hexadecimal characters (`muster token new` prints it)"
        ));
    }
    if config.scopes.is_empty() {
        problems.push(format!("{at}.scopes: a token needs at least one scope"));
    }
    let mut scopes = Vec::new();
    for (j, text) in config.scopes.iter().enumerate() {
        match parse_scope(text) {
            Ok(scope) => scopes.push(scope),
            Err(problem) => problems.push(format!("{at}.scopes[{j}]: {text:?}: {problem}")),
        }
    }
    match hash {
        Some(hash) if problems.is_empty() => Ok((
            hash,
            Token {
                name: name.clone(),
                scopes,
            },
        )),
        _ => Err(problems),
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| char::from(b).to_digit(16);
        hash[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(hash)
}

/// Why a scope, glob or action of `[auth]` or `[[update.keys]]` is refused; the caller
/// names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("admin cannot be limited to namespaces or services")]
    LimitedAdmin,
    #[error("the scope must be read, register, health or admin")]
    UnknownScope,
    #[error("an empty glob matches nothing")]
    EmptyGlob,
    #[error("{0}")]
    Glob(#[from] globset::Error),
    #[error("an action is servicediscovery:NAME (or *)")]
    NotAnAction,
    #[error("names no Cloud Map action")]
    NoAction,
}

/// `read`, `register`, `health` or `admin`, the first three optionally followed by
/// `:NAMESPACE-GLOB` or `:NAMESPACE-GLOB/SERVICE-GLOB`.
fn parse_scope(text: &str) -> Result<Scope, PatternError> {
    let (kind, limit) = match text.split_once(':') {
        Some((kind, limit)) => (kind, Some(limit)),
        None => (text, None),
    };
    let kind = match kind {
        "read" => ScopeKind::Read,
        "register" => ScopeKind::Register,
        "health" => ScopeKind::Health,
        "admin" if limit.is_none() => ScopeKind::Admin,
        "admin" => return Err(PatternError::LimitedAdmin),
        _ => return Err(PatternError::UnknownScope),
    };
    let limit = match limit {
        None => None,
        Some(limit) => {
            let (namespace, service) = limit.split_once('/').unwrap_or((limit, "*"));
            Some((glob(namespace)?, glob(service)?))
        }
    };
    Ok(Scope { kind, limit })
}

/// A case-insensitive glob (`*`, `?`, `[a-z]`, `{a,b}`) matching names; empty is an
/// error. Shared with `[[update.keys]]` so both permission tables read alike.
pub(crate) fn glob(pattern: &str) -> Result<GlobMatcher, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::EmptyGlob);
    }
    let glob = GlobBuilder::new(pattern).case_insensitive(true).build()?;
    Ok(glob.compile_matcher())
}

fn build_key(config: &AccessKeyConfig, at: &str) -> Result<AccessKey, Vec<String>> {
    let mut problems = Vec::new();
    let id = &config.id;
    let id_ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !id_ok {
        problems.push(format!(
            "{at}.id: {id:?} is not 1-128 of A-Z, a-z, 0-9, '_'"
        ));
    }
    let secret = read_secret(config, at).map_err(|problem| problems.push(problem));
    let mut permissions = Vec::new();
    for (j, allow) in config.allow.iter().enumerate() {
        match build_permission(allow, &format!("{at}.allow[{j}]")) {
            Ok(permission) => permissions.push(permission),
            Err(errors) => problems.extend(errors),
        }
    }
    match secret {
        Ok(secret) if problems.is_empty() => Ok(AccessKey {
            id: id.clone(),
            secret,
            permissions,
        }),
        _ => Err(problems),
    }
}

/// The secret from exactly one of `secret`, `secret_file`, `secret_env`.
fn read_secret(config: &AccessKeyConfig, at: &str) -> Result<Vec<u8>, String> {
    let given = [
        config.secret.is_some(),
        config.secret_file.is_some(),
        config.secret_env.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{at}: give the secret in exactly one of secret, secret_file, secret_env"
        ));
    }
    let (key, secret) = if let Some(secret) = &config.secret {
        if secret.expose() == Secret::PLACEHOLDER {
            return Err(format!(
                "{at}.secret: {:?} is what print-config shows instead of a secret; give the real one",
                Secret::PLACEHOLDER
            ));
        }
        ("secret", secret.expose().to_owned())
    } else if let Some(path) = &config.secret_file {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_SECRET as u64 + 2).read_to_string(&mut text))
            .map_err(|e| format!("{at}.secret_file: cannot read {}: {e}", path.display()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        ("secret_file", text.to_owned())
    } else {
        let name = config.secret_env.as_deref().unwrap_or_default();
        let value = std::env::var(name)
            .map_err(|_| format!("{at}.secret_env: the variable {name:?} is not set"))?;
        ("secret_env", value)
    };
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(format!(
            "{at}.{key}: the secret must be 1-{MAX_SECRET} bytes"
        ));
    }
    Ok(secret.into_bytes())
}

fn build_permission(config: &PermissionConfig, at: &str) -> Result<Permission, Vec<String>> {
    let mut problems = Vec::new();
    let mut actions = GlobSetBuilder::new();
    if config.actions.is_empty() {
        problems.push(format!("{at}.actions: at least one action is needed"));
    }
    for (k, action) in config.actions.iter().enumerate() {
        match action_glob(action) {
            Ok(glob) => {
                actions.add(glob);
            }
            Err(problem) => problems.push(format!("{at}.actions[{k}]: {action:?}: {problem}")),
        }
    }
    let mut namespaces = GlobSetBuilder::new();
    if config.namespaces.is_empty() {
        problems.push(format!(
            "{at}.namespaces: at least one namespace glob is needed (\"*\" for all)"
        ));
    }
    for (k, pattern) in config.namespaces.iter().enumerate() {
        match GlobBuilder::new(pattern).case_insensitive(true).build() {
            Ok(glob) if !pattern.is_empty() => {
                namespaces.add(glob);
            }
            Ok(_) => problems.push(format!(
                "{at}.namespaces[{k}]: an empty glob matches nothing"
            )),
            Err(e) => problems.push(format!("{at}.namespaces[{k}]: {pattern:?}: {e}")),
        }
    }
    let (Ok(actions), Ok(namespaces)) = (actions.build(), namespaces.build()) else {
        problems.push(format!("{at}: the globs do not compile"));
        return Err(problems);
    };
    if problems.is_empty() {
        Ok(Permission {
            actions,
            namespaces,
        })
    } else {
        Err(problems)
    }
}

/// `*`, or `servicediscovery:` and a glob that names at least one Cloud Map operation
/// (so a typo is an error, not a permission that never applies). Matched against the
/// operation's name.
fn action_glob(action: &str) -> Result<globset::Glob, PatternError> {
    let pattern = if action == "*" {
        "*"
    } else {
        match action.split_once(':') {
            Some((service, pattern)) if service.eq_ignore_ascii_case("servicediscovery") => pattern,
            _ => return Err(PatternError::NotAnAction),
        }
    };
    let glob = GlobBuilder::new(pattern).case_insensitive(true).build()?;
    let matcher = glob.compile_matcher();
    if OPERATIONS.iter().any(|(name, _)| matcher.is_match(name)) {
        Ok(glob)
    } else {
        Err(PatternError::NoAction)
    }
}
