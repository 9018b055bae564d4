//! `[cloudmap]`: how the Cloud Map API names things.

use serde::{Deserialize, Serialize};

use crate::registry::NamePattern;

/// `[cloudmap]`: how the Cloud Map API names things in ARNs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudMapConfig {
    /// The region in ARNs (`arn:aws:servicediscovery:REGION:...`).
    pub region: String,
    /// The 12-digit account id in ARNs, `ResourceOwner` and `CreatedByAccount`.
    pub account: String,
    /// Names DNS namespaces created through the API may take: `name` allows the name and
    /// every name below it, `*.name` only the names below it. The default names only
    /// suffixes that are never public (RFC 6761, RFC 8375, ICANN's `internal`), so an API
    /// namespace can never shadow a name muster forwards. HTTP namespaces (no DNS) may
    /// take any name. A namespace at or below a configured one is always refused.
    pub allowed_namespaces: Vec<String>,
}

impl Default for CloudMapConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            account: "123456789012".to_owned(),
            allowed_namespaces: ["internal", "test", "example", "home.arpa"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

impl CloudMapConfig {
    /// The patterns of `allowed_namespaces`, with every problem of `[cloudmap]` pushed to
    /// `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) -> Vec<NamePattern> {
        let account = &self.account;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("cloudmap.account: {account:?} is not 12 digits"));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            problems.push(format!(
                "cloudmap.region: {:?} is not a region name",
                self.region
            ));
        }
        let mut patterns = Vec::new();
        for (i, pattern) in self.allowed_namespaces.iter().enumerate() {
            match NamePattern::parse(pattern) {
                Ok(pattern) => patterns.push(pattern),
                Err(problem) => {
                    problems.push(format!("cloudmap.allowed_namespaces[{i}]: {problem}"))
                }
            }
        }
        patterns
    }
}
