//! `[update]`: who may change instances with signed DNS UPDATE messages (RFC 2136),
//! served by `sources::update`.

use globset::GlobMatcher;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use super::TransferConfig;

/// The most records one UPDATE may carry: what a 64 KiB TCP message holds of the
/// smallest updates, and what one logged change of the registry holds (1 MiB).
pub const MAX_RECORDS_CEILING: usize = 4096;

/// `[update]`: DNS UPDATE as a registration source. Without keys every UPDATE is REFUSED.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// Prerequisite plus update records one message may carry (1..4096); a larger
    /// message is REFUSED whole.
    pub max_records: usize,
    /// The TSIG keys that may update, and what each may touch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<UpdateKeyConfig>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            max_records: 1000,
            keys: Vec::new(),
        }
    }
}

/// `[[update.keys]]`: one TSIG key's permission to update.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyConfig {
    /// The name of a `[[transfer.tsig_keys]]` key, whose secret signs the UPDATEs.
    pub name: String,
    /// Namespace globs (case-insensitive) the key may update in.
    #[serde(default = "everything")]
    pub namespaces: Vec<String>,
    /// Service globs the key may update in those namespaces.
    #[serde(default = "everything")]
    pub services: Vec<String>,
}

fn everything() -> Vec<String> {
    vec!["*".to_owned()]
}

impl UpdateConfig {
    /// The keys' grants, typed, with every problem (named `update.key: ...`) pushed to
    /// `problems`; `transfer` holds the keys' secrets.
    pub(super) fn validate(
        &self,
        transfer: &TransferConfig,
        problems: &mut Vec<String>,
    ) -> Vec<UpdateGrant> {
        if !(1..=MAX_RECORDS_CEILING).contains(&self.max_records) {
            problems.push(format!(
                "update.max_records: {} is outside 1..{MAX_RECORDS_CEILING}",
                self.max_records
            ));
        }
        let mut grants = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let known = transfer
                .tsig_keys
                .iter()
                .any(|k| same_name(&k.name, &key.name));
            if !known {
                problems.push(format!(
                    "update.keys[{i}].name: {:?} is not a [[transfer.tsig_keys]] name",
                    key.name
                ));
            }
            if self.keys[..i].iter().any(|k| same_name(&k.name, &key.name)) {
                problems.push(format!(
                    "update.keys[{i}].name: {:?} is configured twice",
                    key.name
                ));
            }
            let name = Name::from_ascii(&key.name);
            if let (Err(e), true) = (&name, known) {
                problems.push(format!("update.keys[{i}].name: {:?}: {e}", key.name));
            }
            let mut globs = |field: &str, list: &[String]| {
                let mut matchers = Vec::new();
                for (j, glob) in list.iter().enumerate() {
                    match crate::api::auth::glob(glob) {
                        Ok(matcher) => matchers.push(matcher),
                        Err(problem) => {
                            problems.push(format!("update.keys[{i}].{field}[{j}]: {problem}"))
                        }
                    }
                }
                matchers
            };
            let (namespaces, services) = (
                globs("namespaces", &key.namespaces),
                globs("services", &key.services),
            );
            if let Ok(mut name) = name {
                // As the key's TSIG names it (and as `dns::TsigKey` holds it).
                name.set_fqdn(true);
                grants.push(UpdateGrant {
                    name: name.to_lowercase(),
                    namespaces,
                    services,
                });
            }
        }
        grants
    }
}

/// An `[[update.keys]]` entry, validated: the key's name (absolute, lower case) and its
/// globs compiled.
#[derive(Clone, Debug)]
pub struct UpdateGrant {
    pub name: Name,
    pub namespaces: Vec<GlobMatcher>,
    pub services: Vec<GlobMatcher>,
}

/// Whether two key names are the same DNS name (case and a trailing dot aside).
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn update_keys_must_name_a_tsig_key_and_compile() {
        let text = r#"
            [transfer]
            tsig_keys = [{ name = "ddns.", secret = "c2VjcmV0" }]
            [update]
            max_records = 0
            [[update.keys]]
            name = "DDNS"
            [[update.keys]]
            name = "ddns"
            services = ["[unclosed"]
            [[update.keys]]
            name = "nobody"
        "#;
        let Err(crate::config::ConfigError::Invalid(problems)) =
            Config::parse(text).unwrap().settings()
        else {
            panic!("invalid [update] accepted");
        };
        let all = problems.join("\n");
        for expected in [
            "update.max_records",
            "update.keys[1].name: \"ddns\" is configured twice",
            "update.keys[1].services[0]",
            "update.keys[2].name: \"nobody\" is not a [[transfer.tsig_keys]] name",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
        assert!(!all.contains("update.keys[0]"), "{all}");
    }
}
