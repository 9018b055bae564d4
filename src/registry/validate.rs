//! Input rules: Cloud Map's limits on names, ids and attributes, shared by every source that accepts
//! input from outside (the REST API, the file source).

use std::collections::BTreeMap;

use super::model::{NamedPort, PRIORITY_ATTRIBUTE, WEIGHT_ATTRIBUTE};

/// A rejected field and why; the API turns it into a 4xx naming `field`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

const MAX_ATTRIBUTES: usize = 30;
const MAX_ATTRIBUTE_KEY: usize = 255;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_INSTANCE_ID: usize = 64;

/// A service name is one DNS label; it is stored lowercase because DNS matching ignores
/// case (Cloud Map likewise refuses DNS services that differ only by case). `_tcp` and
/// `_udp` are taken by the RFC 2782 names.
pub fn service_name(name: &str) -> Result<String, FieldError> {
    let lower = name.to_ascii_lowercase();
    if !is_label(&lower) {
        return Err(FieldError::new(
            "service",
            format!("{name:?} is not a DNS label (1-63 of a-z, 0-9, '_', inner '-')"),
        ));
    }
    if lower == "_tcp" || lower == "_udp" {
        return Err(FieldError::new(
            "service",
            format!("{name:?} is reserved for SRV names"),
        ));
    }
    Ok(lower)
}

/// Cloud Map's instance id: 1-64 of `0-9a-zA-Z_/:.@-`.
pub fn instance_id(id: &str) -> Result<(), FieldError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_INSTANCE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/:.@-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            "id",
            format!("{id:?} must be 1-{MAX_INSTANCE_ID} of 0-9 a-z A-Z _ / : . @ -"),
        ))
    }
}

/// Cloud Map's attribute limits: 30 attributes, keys of 1-255 and values of 0-1,024
/// printable ASCII characters. Their total size is an API limit the registry's writer
/// checks (`[limits] attribute_bytes`, Cloud Map's 5,000 by default).
pub fn attributes(attributes: &BTreeMap<String, String>) -> Result<(), FieldError> {
    let fail = |message: String| Err(FieldError::new("attributes", message));
    if attributes.len() > MAX_ATTRIBUTES {
        return fail(format!(
            "{} attributes; at most {MAX_ATTRIBUTES}",
            attributes.len()
        ));
    }
    for (key, value) in attributes {
        if key.is_empty()
            || key.len() > MAX_ATTRIBUTE_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return fail(format!(
                "key {key:?} must be 1-{MAX_ATTRIBUTE_KEY} printable ASCII characters"
            ));
        }
        let value_ok = value.len() <= MAX_ATTRIBUTE_VALUE
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
            && !value.starts_with([' ', '\t'])
            && !value.ends_with([' ', '\t']);
        if !value_ok {
            return fail(format!(
                "value of {key:?} must be at most {MAX_ATTRIBUTE_VALUE} printable ASCII characters, no outer spaces"
            ));
        }
        let srv_field = [PRIORITY_ATTRIBUTE, WEIGHT_ATTRIBUTE].contains(&key.as_str());
        if srv_field && value.parse::<u16>().is_err() {
            return fail(format!(
                "value of {key:?} must be a whole number from 0 to 65535 (its SRV records')"
            ));
        }
    }
    Ok(())
}

/// Named ports an instance may have: each is one more SRV record per instance and one
/// more name per service.
pub const MAX_NAMED_PORTS: usize = 16;

/// A port name: the label `_<name>` in `_<name>._tcp.<svc>.<ns>`, so 1-62 of `[a-z0-9_-]`,
/// not starting or ending with `-` (ECS port mapping names allow 64 characters; longer
/// ones cannot be DNS names). Lowercase only, as ECS requires: DNS matching ignores case.
pub fn port_name(name: &str) -> Result<(), FieldError> {
    if name.len() < 63 && is_label(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            "ports",
            format!("{name:?} is not a port name (1-62 of a-z, 0-9, '_', inner '-')"),
        ))
    }
}

/// At most [`MAX_NAMED_PORTS`] ports, each with a valid name (ports are 1-65535 by type).
pub fn ports(ports: &BTreeMap<String, NamedPort>) -> Result<(), FieldError> {
    if ports.len() > MAX_NAMED_PORTS {
        return Err(FieldError::new(
            "ports",
            format!("{} named ports; at most {MAX_NAMED_PORTS}", ports.len()),
        ));
    }
    ports.keys().try_for_each(|name| port_name(name))
}

/// A port for SRV records and health checks.
pub fn port(port: u16) -> Result<u16, FieldError> {
    if port == 0 {
        return Err(FieldError::new("port", "must be 1-65535"));
    }
    Ok(port)
}

/// One DNS label of `[a-z0-9_-]`, not starting or ending with `-`.
pub fn is_label(label: &str) -> bool {
    is_label_within(label, 63, b"_-")
}

/// Whether `label` is 1 to `max` bytes of `a-z 0-9` and the bytes of `also`, without a
/// leading or trailing `-`.
pub fn is_label_within(label: &str, max: usize, also: &[u8]) -> bool {
    (1..=max).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || also.contains(&b))
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(service_name("Web").unwrap(), "web");
        assert!(service_name("bad_name!").is_err());
        assert!(service_name(&"a".repeat(64)).is_err());
        assert!(service_name("-web").is_err());
        assert!(service_name("_tcp").is_err());
        assert!(service_name("_web").is_ok());
    }

    #[test]
    fn instance_ids() {
        assert!(instance_id("arn:aws:ecs:task/abc@1.2").is_ok());
        assert!(instance_id("").is_err());
        assert!(instance_id("a b").is_err());
        assert!(instance_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn port_names_and_counts() {
        for good in ["http", "grpc-web", "a", "_x", &"p".repeat(62)] {
            assert!(port_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Http", "-x", "x-", "a.b", "a b", &"p".repeat(63)] {
            assert!(port_name(bad).is_err(), "{bad:?}");
        }
        let named = |n: usize| -> BTreeMap<String, NamedPort> {
            (0..n)
                .map(|i| {
                    let port = NamedPort {
                        port: 8000 + i as u16,
                        protocol: crate::registry::Protocol::Tcp,
                    };
                    (format!("p{i}"), port)
                })
                .collect()
        };
        assert!(ports(&named(MAX_NAMED_PORTS)).is_ok());
        assert_eq!(
            ports(&named(MAX_NAMED_PORTS + 1)).unwrap_err().field,
            "ports"
        );
    }

    #[test]
    fn named_ports_read_as_a_number_or_a_table_and_never_zero() {
        let read = |json: &str| serde_json::from_str::<NamedPort>(json);
        let tcp = crate::registry::Protocol::Tcp;
        let udp = crate::registry::Protocol::Udp;
        assert_eq!(
            read("9090").unwrap(),
            NamedPort {
                port: 9090,
                protocol: tcp
            }
        );
        let full = read(r#"{"port": 53, "protocol": "udp"}"#).unwrap();
        assert_eq!(
            full,
            NamedPort {
                port: 53,
                protocol: udp
            }
        );
        assert_eq!(read(r#"{"port": 80}"#).unwrap().protocol, tcp);
        // Stored as the table, which reads back.
        let stored = serde_json::to_string(&full).unwrap();
        assert_eq!(stored, r#"{"port":53,"protocol":"udp"}"#);
        assert_eq!(read(&stored).unwrap(), full);
        for bad in [
            "0",
            "70000",
            r#"{"port": 0}"#,
            r#"{"port": 1, "protocol": "sctp"}"#,
            r#"{"port": 1, "x": 1}"#,
            r#""80""#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let message = read(r#""80""#).unwrap_err().to_string();
        assert!(message.contains("a port number, or"), "{message}");
    }

    #[test]
    fn attribute_limits() {
        let many: BTreeMap<_, _> = (0..31)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(attributes(&many).is_err());
        let long: BTreeMap<_, _> = [("k".to_string(), "v".repeat(1025))].into();
        assert!(attributes(&long).is_err());
        let ok: BTreeMap<_, _> = [("zone".to_string(), "us east 1a".to_string())].into();
        assert!(attributes(&ok).is_ok());
        let padded: BTreeMap<_, _> = [("zone".to_string(), " a".to_string())].into();
        assert!(attributes(&padded).is_err());
    }
}
