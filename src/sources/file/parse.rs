//! Reading the file's text into the instances it declares. Pure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use crate::registry::validate::{self, FieldError};
use crate::registry::{InstanceKey, InstanceSpec, NamedPort, SpecExtras};

/// The file's top level: `[[instances]]` tables (TOML) or `{"instances": [...]}` (JSON).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    instances: Vec<Entry>,
}

/// One instance, the same fields as the REST API's body plus where it lives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    namespace: String,
    service: String,
    id: String,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<u16>,
    /// Named ports: `ports = { grpc = 9090, dns = { port = 53, protocol = "udp" } }`.
    #[serde(default)]
    ports: BTreeMap<String, NamedPort>,
    #[serde(default = "healthy")]
    healthy: bool,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn healthy() -> bool {
    true
}

/// Why a file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Syntax(String),
    #[error("instances[{index}] ({id:?}): {error}")]
    Invalid {
        index: usize,
        id: String,
        error: FieldError,
    },
}

/// Parses `text` (JSON when `json`, else TOML) into validated instances. The file is
/// applied whole or not at all, so any invalid entry rejects it.
pub fn parse(text: &str, json: bool) -> Result<Vec<(InstanceKey, InstanceSpec)>, FileError> {
    let file: File = if json {
        serde_json::from_str(text).map_err(|e| FileError::Syntax(e.to_string()))?
    } else {
        toml::from_str(text).map_err(|e| FileError::Syntax(e.to_string()))?
    };
    file.instances
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let id = entry.id.clone();
            entry
                .validated()
                .map_err(|error| FileError::Invalid { index, id, error })
        })
        .collect()
}

impl Entry {
    fn validated(self) -> Result<(InstanceKey, InstanceSpec), FieldError> {
        let service = validate::service_name(&self.service)?;
        validate::instance_id(&self.id)?;
        validate::attributes(&self.attributes)?;
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Err(FieldError::new("ipv4", "an instance needs ipv4 or ipv6"));
        }
        let port = self.port.map(validate::port).transpose()?;
        validate::ports(&self.ports)?;
        let key = InstanceKey {
            namespace: self.namespace.trim_end_matches('.').to_ascii_lowercase(),
            service,
            id: self.id,
        };
        let spec = InstanceSpec {
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            port,
            attributes: self.attributes,
            healthy: self.healthy,
            extras: SpecExtras {
                ports: self.ports,
                ..SpecExtras::default()
            }
            .into(),
        };
        Ok((key, spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_json() {
        let toml = r#"
            [[instances]]
            namespace = "internal"
            service = "DB"
            id = "db-1"
            ipv4 = "10.0.0.9"
            port = 5432
            attributes = { zone = "a" }
        "#;
        let parsed = parse(toml, false).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0.service, "db");
        assert!(parsed[0].1.healthy);
        let json = r#"{"instances": [{"namespace": "internal", "service": "db", "id": "x", "ipv6": "::1", "healthy": false}]}"#;
        let parsed = parse(json, true).unwrap();
        assert!(!parsed[0].1.healthy);
    }

    #[test]
    fn reads_named_ports() {
        let toml = r#"
            [[instances]]
            namespace = "internal"
            service = "api"
            id = "a-1"
            ipv4 = "10.0.0.9"
            port = 8080
            ports = { grpc = 9090, dns = { port = 53, protocol = "udp" } }
        "#;
        let parsed = parse(toml, false).unwrap();
        let ports = parsed[0].1.ports();
        assert_eq!(ports["grpc"].port, 9090);
        assert_eq!(ports["dns"].protocol, crate::registry::Protocol::Udp);
        let bad = toml.replace("grpc = 9090", "GRPC = 9090");
        let error = parse(&bad, false).unwrap_err().to_string();
        assert!(error.contains("ports") && error.contains("GRPC"), "{error}");
        assert!(parse(&toml.replace("9090", "0"), false).is_err());
    }

    #[test]
    fn rejects_the_whole_file_for_one_bad_entry() {
        let text = r#"
            [[instances]]
            namespace = "internal"
            service = "db"
            id = "ok"
            ipv4 = "10.0.0.1"
            [[instances]]
            namespace = "internal"
            service = "db"
            id = "no-address"
        "#;
        let error = parse(text, false).unwrap_err().to_string();
        assert!(error.contains("instances[1]"), "{error}");
        assert!(parse("[[instances]]\nnamespace = 1", false).is_err());
        assert!(parse("[[instances]]\nbogus = 1", false).is_err());
        assert!(parse("[[instances]]\nnamespace = \"internal\"\nservice = \"a\"\nid = \"b\"\nipv4 = \"10.0.0.300\"", false).is_err());
    }
}
