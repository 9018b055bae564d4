//! How instances are named in DNS: the registry owns instance ids, so it owns the one
//! label each id gets, which the DNS zone serves and the REST API and UPDATE report.

use super::validate::{is_label, is_label_within};
use crate::fnv::fnv1a64;

/// The label an attribute value takes in a DNS subset name, `<value>._<key>.<svc>.<ns>`:
/// the value lowercased, when that is a label of `a-z 0-9 -` (no leading or trailing
/// `-`, at most 63 bytes); `None` otherwise, and the instance is in no subset of that key.
/// Never starting with `_`, a subset name cannot be a named port's `_<port>._<proto>`.
pub fn subset_label(value: &str) -> Option<String> {
    let label = value.to_ascii_lowercase();
    is_label_within(&label, 63, b"-").then_some(label)
}

/// The DNS label of an instance, `<label>.<service>.<namespace>`.
///
/// An id that is already a lowercase DNS label (`[a-z0-9_]`, inner `-`, at most 63
/// bytes) is used as it is. Any other id (Cloud Map allows `/ : . @` and upper case; DNS
/// matching is case-insensitive) becomes its lowercased, sanitized form (other
/// characters replaced by `-`, at most 40 bytes) followed by `-` and 12 hex digits of the
/// FNV-1a 64 hash of the exact id: stable across restarts and replicas, and distinct
/// for ids that differ only in case or punctuation.
pub fn instance_label(id: &str) -> String {
    if is_label(id) {
        return id.to_owned();
    }
    let sanitized: String = id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '-',
        })
        .take(40)
        .collect();
    let sanitized = sanitized.trim_matches('-');
    let hash = fnv1a64(id.as_bytes()) >> 16;
    if sanitized.is_empty() {
        format!("i-{hash:012x}")
    } else {
        format!("{sanitized}-{hash:012x}")
    }
}

#[cfg(test)]
mod tests {
    use super::instance_label;

    #[test]
    fn plain_ids_are_their_own_label() {
        assert_eq!(instance_label("i-1"), "i-1");
        assert_eq!(instance_label("0a1b2c3d4e5f"), "0a1b2c3d4e5f");
        assert_eq!(instance_label("web_1"), "web_1");
    }

    #[test]
    fn other_ids_get_a_stable_hashed_label() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task/prod/0a1b";
        let label = instance_label(arn);
        assert_eq!(label, instance_label(arn), "stable");
        assert!(
            label.starts_with("arn-aws-ecs-us-east-1-123456789012-task-"),
            "{label}"
        );
        assert!(label.len() <= 63);
        assert_ne!(instance_label("Web-1"), instance_label("web-1"));
        assert_ne!(instance_label("Web-1"), instance_label("WEB-1"));
        assert!(instance_label("@@@").starts_with("i-"));
        assert!(instance_label("-x-").starts_with("x-"));
    }
}
