//! What the APIs may create: ceilings on namespaces, services, instances, attributes and
//! tags, and the names API namespaces may take.
//!
//! Checked by the registry's writer against the state a change applies to, never a stale
//! snapshot, so concurrent writes cannot together pass a limit. Only API changes are
//! checked: sources are the operator's configuration, and replaying the log at start is
//! never cut short by a limit lowered since.

use std::fmt;

use super::change::ChangeError;
use super::model::NamespaceKind;

/// Tags a namespace or service may carry (Cloud Map's limit).
pub const MAX_TAGS: usize = 50;
/// Attributes a service may carry (Cloud Map's limit).
pub const MAX_SERVICE_ATTRIBUTES: usize = 30;

/// The ceilings and name rules for API changes.
#[derive(Clone, Debug)]
pub struct Admission {
    /// Namespaces created through the API.
    pub namespaces: usize,
    pub services_per_namespace: usize,
    pub instances_per_service: usize,
    /// Instances registered through the APIs and DNS UPDATE, in all.
    pub instances: usize,
    /// Bytes of attribute keys plus values, per instance or service.
    pub attribute_bytes: usize,
    /// Names DNS namespaces created through the API may take.
    pub allowed_namespaces: Vec<NamePattern>,
    /// Namespaces of the configuration file: the API may not create one at or below them.
    pub config_namespaces: Vec<String>,
}

/// Which limit a change would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Namespaces,
    ServicesPerNamespace,
    InstancesPerService,
    Instances,
    AttributeBytes,
    ServiceAttributes,
    Tags,
}

impl Limit {
    /// The configuration key that sets it, or the Cloud Map quota it is.
    pub fn key(self) -> &'static str {
        match self {
            Self::Namespaces => "limits.namespaces",
            Self::ServicesPerNamespace => "limits.services_per_namespace",
            Self::InstancesPerService => "limits.instances_per_service",
            Self::Instances => "limits.instances",
            Self::AttributeBytes => "limits.attribute_bytes",
            Self::ServiceAttributes => "attributes",
            Self::Tags => "tags",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A namespace pattern that [`NamePattern::parse`] refuses (the text given).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a name or *.name of labels a-z 0-9 _ -")]
pub struct BadPattern(String);

/// A pattern for namespace names: `internal` matches `internal` and every name below it,
/// `*.corp.example` only the names below `corp.example`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    suffix: String,
    below_only: bool,
}

impl NamePattern {
    /// Parses a pattern; names are compared lower case, without a trailing dot.
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let (suffix, below_only) = match lower.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), true),
            None => (lower, false),
        };
        if suffix.is_empty() || !suffix.split('.').all(super::validate::is_label) {
            return Err(BadPattern(text.to_owned()));
        }
        Ok(Self { suffix, below_only })
    }

    pub fn matches(&self, name: &str) -> bool {
        let below = name
            .strip_suffix(&self.suffix)
            .is_some_and(|head| head.ends_with('.'));
        below || (!self.below_only && name == self.suffix)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.below_only {
            f.write_str("*.")?;
        }
        f.write_str(&self.suffix)
    }
}

/// Whether `name` is `ancestor` or below it.
fn at_or_below(name: &str, ancestor: &str) -> bool {
    name == ancestor
        || name
            .strip_suffix(ancestor)
            .is_some_and(|head| head.ends_with('.'))
}

impl Admission {
    /// Refuses a new namespace the API may not create: a DNS name outside the allowed
    /// patterns (it could shadow names muster forwards, or a public zone), or at or
    /// below a namespace of the configuration file (it would take over its names).
    pub fn namespace(
        &self,
        name: &str,
        kind: NamespaceKind,
        api_namespaces: usize,
    ) -> Result<(), ChangeError> {
        if api_namespaces >= self.namespaces {
            return Err(exceeded(
                Limit::Namespaces,
                format!(
                    "{api_namespaces} namespaces exist; the limit is {}",
                    self.namespaces
                ),
            ));
        }
        if kind == NamespaceKind::Http {
            return Ok(());
        }
        if let Some(parent) = self.config_namespaces.iter().find(|c| at_or_below(name, c)) {
            return Err(ChangeError::Invalid(format!(
                "namespace {name:?} would take over names of the configured namespace {parent:?}"
            )));
        }
        if !self.allowed_namespaces.iter().any(|p| p.matches(name)) {
            let allowed: Vec<String> = self
                .allowed_namespaces
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(ChangeError::Invalid(format!(
                "namespace {name:?} is not allowed ([cloudmap] allowed_namespaces: {})",
                allowed.join(", ")
            )));
        }
        Ok(())
    }

    /// Refuses attributes over the byte limit.
    pub fn attributes<'a>(
        &self,
        attributes: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), ChangeError> {
        let bytes = attributes.into_iter().fold(0usize, |sum, (k, v)| {
            sum.saturating_add(k.len()).saturating_add(v.len())
        });
        if bytes > self.attribute_bytes {
            return Err(exceeded(
                Limit::AttributeBytes,
                format!(
                    "{bytes} bytes of attribute keys and values; the limit is {}",
                    self.attribute_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A limit error.
pub fn exceeded(limit: Limit, message: String) -> ChangeError {
    ChangeError::LimitExceeded { limit, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_what_is_below() {
        let internal = NamePattern::parse("Internal.").unwrap();
        assert!(internal.matches("internal"));
        assert!(internal.matches("a.b.internal"));
        assert!(!internal.matches("xinternal"));
        assert!(!internal.matches("internal.com"));
        let below = NamePattern::parse("*.corp.example").unwrap();
        assert!(below.matches("a.corp.example"));
        assert!(!below.matches("corp.example"));
        assert!(!below.matches("acorp.example"));
        assert!(NamePattern::parse("*").is_err());
        assert!(NamePattern::parse("a b").is_err());
        assert_eq!(below.to_string(), "*.corp.example");
    }
}
