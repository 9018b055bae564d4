//! Credentials built from `[auth]`: scopes, permissions, secrets, every problem named.

use super::credentials::*;
use super::sigv4::hex;
use crate::config::AuthConfig;

fn config(text: &str) -> AuthConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn scopes_limit_tokens_by_namespace_and_service_globs() {
    let hash = hex(&hash_token("t1"));
    let credentials = Credentials::from_config(&config(&format!(
        "[[tokens]]\nname = \"ci\"\nsha256 = \"{hash}\"\nscopes = [\"read\", \"register:prod*/web-*\", \"health:dev\"]\n"
    )))
    .unwrap();
    let token = credentials.token("t1").unwrap();
    assert_eq!(token.name, "ci");
    assert!(credentials.token("t2").is_none());
    assert!(token.allows(ScopeKind::Read, "anything", "at-all"));
    assert!(token.allows_everywhere(ScopeKind::Read));
    assert!(token.allows(ScopeKind::Register, "prod.example", "web-1"));
    assert!(token.allows(ScopeKind::Register, "PROD", "WEB-2"));
    assert!(!token.allows(ScopeKind::Register, "prod", "api"));
    assert!(!token.allows(ScopeKind::Register, "staging", "web-1"));
    assert!(token.allows(ScopeKind::Health, "dev", "any"));
    assert!(!token.allows(ScopeKind::Health, "prod", "any"));
    assert!(!token.allows_everywhere(ScopeKind::Health));
    assert!(!token.has(ScopeKind::Admin));
}

#[test]
fn admin_allows_everything() {
    let hash = hex(&hash_token("root"));
    let credentials = Credentials::from_config(&config(&format!(
        "[[tokens]]\nname = \"root\"\nsha256 = \"{hash}\"\nscopes = [\"admin\"]\n"
    )))
    .unwrap();
    let token = credentials.token("root").unwrap();
    for kind in [ScopeKind::Read, ScopeKind::Register, ScopeKind::Health] {
        assert!(token.allows(kind, "ns", "svc") && token.allows_everywhere(kind));
    }
}

#[test]
fn permissions_match_actions_and_namespaces() {
    let credentials = Credentials::from_config(&config(
        r#"
        [[access_keys]]
        id = "AKIDEXAMPLE"
        secret = "s3cret"
        [[access_keys.allow]]
        actions = ["servicediscovery:DiscoverInstances", "servicediscovery:get*"]
        [[access_keys.allow]]
        actions = ["servicediscovery:*"]
        namespaces = ["dev.*"]
        "#,
    ))
    .unwrap();
    let key = credentials.access_key("AKIDEXAMPLE").unwrap();
    assert_eq!(key.secret(), b"s3cret");
    assert!(key.allows("DiscoverInstances", "prod"));
    assert!(key.allows("GetNamespace", "prod"));
    assert!(!key.allows("RegisterInstance", "prod"));
    assert!(key.allows("RegisterInstance", "dev.example"));
    assert!(key.allows_somewhere("DeleteNamespace"));
    assert!(!format!("{key:?}").contains("s3cret"));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let problems = Credentials::from_config(&config(
        r#"
        [[tokens]]
        name = "bad name"
        sha256 = "abc"
        scopes = ["write", "admin:prod", "read:[x"]
        [[access_keys]]
        id = "AK"
        secret = "x"
        secret_env = "Y"
        [[access_keys.allow]]
        actions = ["servicediscovery:DiscoverInstance", "ec2:*"]
        namespaces = []
        [[access_keys]]
        id = "AK2"
        secret_file = "/nonexistent/secret"
        "#,
    ))
    .unwrap_err();
    let all = problems.join("\n");
    for expected in [
        "auth.tokens[0].name",
        "auth.tokens[0].sha256",
        "auth.tokens[0].scopes[0]",
        "auth.tokens[0].scopes[1]",
        "auth.tokens[0].scopes[2]",
        "auth.access_keys[0]: give the secret in exactly one",
        "auth.access_keys[0].allow[0].actions[0]",
        "auth.access_keys[0].allow[0].actions[1]",
        "auth.access_keys[0].allow[0].namespaces",
        "auth.access_keys[1].secret_file: cannot read /nonexistent/secret",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
}

#[test]
fn the_print_config_placeholder_is_not_a_secret() {
    let problems = Credentials::from_config(&config(
        "[[access_keys]]\nid = \"AK\"\nsecret = \"<redacted>\"\n",
    ))
    .unwrap_err();
    assert!(problems[0].contains("print-config"), "{problems:?}");
}

#[test]
fn secrets_come_from_files_without_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-a-file\n").unwrap();
    let credentials = Credentials::from_config(&config(&format!(
        "[[access_keys]]\nid = \"AK\"\nsecret_file = {:?}\n",
        path.display().to_string()
    )))
    .unwrap();
    assert_eq!(
        credentials.access_key("AK").unwrap().secret(),
        b"from-a-file"
    );
}

#[test]
fn issued_tokens_match_their_entry() {
    let (token, entry) = issue_token("ci", &["register:prod/*".to_owned()]).unwrap();
    assert_eq!(entry.sha256, hex(&hash_token(&token)));
    let problems = issue_token("bad name", &["write".to_owned()]).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn new_tokens_are_random_and_prefixed() {
    let (a, b) = (new_token(), new_token());
    assert_ne!(a, b);
    assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 47, "{a}");
}
