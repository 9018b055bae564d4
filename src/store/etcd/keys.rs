//! The key layout under the prefix, and the JSON values.
//!
//! ```text
//! {prefix}ns/{namespace}/                      namespace record
//! {prefix}ns/{namespace}/{service}/            service record
//! {prefix}ns/{namespace}/{service}/{instance}  instance record
//! ```
//!
//! Every component is escaped (`%` → `%25`, `/` → `%2F`; Cloud Map instance ids may hold
//! `/`), so keys sort by namespace, then service, and one prefix range reads a namespace
//! or a service with everything below it.

use crate::registry::{
    InstanceKey, InstanceRecord, NamespaceRecord, Record, RecordKey, ServiceRecord,
};

/// What cannot be read back from etcd; such a key is skipped and counted.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("key {0:?} is not muster's layout")]
    Key(String),
    #[error("the value of {key:?} does not decode: {error}")]
    Value {
        key: String,
        error: serde_json::Error,
    },
}

/// How keys are laid out under one prefix.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Where every key lives: the range read at start and watched.
    pub fn root(&self) -> Vec<u8> {
        format!("{}ns/", self.prefix).into_bytes()
    }

    /// The key every transaction also writes, so that the newest `mod_revision` in
    /// [`Layout::root`] is the revision of its last change, deletions included: the
    /// serial a replica that loads the range serves, equal to the one a replica that
    /// followed every change serves. The cluster's revision would not do: member leases,
    /// elections and other users of the cluster move it too.
    pub fn serial_marker(&self) -> Vec<u8> {
        self.root()
    }

    /// Where the replicas' member keys live (outside [`Layout::root`]: not records).
    pub fn members(&self) -> Vec<u8> {
        format!("{}members/", self.prefix).into_bytes()
    }

    /// The name of the election of the replica that runs a source once for all.
    pub fn election(&self, what: &str) -> Vec<u8> {
        format!("{}elections/{what}", self.prefix).into_bytes()
    }

    pub fn key(&self, key: &RecordKey) -> Vec<u8> {
        let mut text = format!("{}ns/", self.prefix);
        match key {
            RecordKey::Namespace(name) => push(&mut text, name, true),
            RecordKey::Service { namespace, service } => {
                push(&mut text, namespace, true);
                push(&mut text, service, true);
            }
            RecordKey::Instance(key) => {
                push(&mut text, &key.namespace, true);
                push(&mut text, &key.service, true);
                push(&mut text, &key.id, false);
            }
        }
        text.into_bytes()
    }

    /// The range `[start, end)` of the keys below a namespace's or service's key.
    pub fn children(&self, key: &RecordKey) -> (Vec<u8>, Vec<u8>) {
        let own = self.key(key);
        let mut start = own.clone();
        start.push(0);
        (start, prefix_end(&own))
    }

    pub fn decode_key(&self, bytes: &[u8]) -> Result<RecordKey, CodecError> {
        let bad = || CodecError::Key(String::from_utf8_lossy(bytes).into_owned());
        let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let rest = text
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix("ns/"))
            .ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let part = |i: usize| unescape(parts[i]).filter(|p| !p.is_empty()).ok_or_else(bad);
        match parts.len() {
            2 if parts[1].is_empty() => Ok(RecordKey::Namespace(part(0)?)),
            3 if parts[2].is_empty() => Ok(RecordKey::Service {
                namespace: part(0)?,
                service: part(1)?,
            }),
            3 => Ok(RecordKey::Instance(InstanceKey {
                namespace: part(0)?,
                service: part(1)?,
                id: part(2)?,
            })),
            _ => Err(bad()),
        }
    }
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn push(text: &mut String, component: &str, separator: bool) {
    for c in component.chars() {
        match c {
            '%' => text.push_str("%25"),
            '/' => text.push_str("%2F"),
            c => text.push(c),
        }
    }
    if separator {
        text.push('/');
    }
}

fn unescape(component: &str) -> Option<String> {
    let mut out = String::with_capacity(component.len());
    let mut rest = component;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A record's value: the JSON of its registry type.
pub fn encode_value(record: &Record) -> Vec<u8> {
    let json = match record {
        Record::Namespace(r) => serde_json::to_vec(r),
        Record::Service(r) => serde_json::to_vec(r),
        Record::Instance(r) => serde_json::to_vec(r),
    };
    json.expect("records serialize to JSON")
}

/// Reads a value of the kind `key` says.
pub fn decode_value(key: &RecordKey, value: &[u8]) -> Result<Record, serde_json::Error> {
    Ok(match key {
        RecordKey::Namespace(_) => {
            Record::Namespace(serde_json::from_slice::<NamespaceRecord>(value)?)
        }
        RecordKey::Service { .. } => {
            Record::Service(serde_json::from_slice::<ServiceRecord>(value)?)
        }
        RecordKey::Instance(_) => {
            Record::Instance(serde_json::from_slice::<InstanceRecord>(value)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_namespace_then_service() {
        let layout = Layout::new("/muster/");
        let instance = RecordKey::Instance(InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: "arn:aws:ecs/task%1/x".into(),
        });
        let service = RecordKey::Service {
            namespace: "internal".into(),
            service: "web".into(),
        };
        let namespace = RecordKey::Namespace("internal".into());
        for key in [&instance, &service, &namespace] {
            assert_eq!(&layout.decode_key(&layout.key(key)).unwrap(), key);
        }
        assert_eq!(
            layout.key(&instance),
            b"/muster/ns/internal/web/arn:aws:ecs%2Ftask%251%2Fx"
        );
        let (start, end) = layout.children(&namespace);
        assert!(start < layout.key(&service) && layout.key(&instance) < end);
        assert!(layout.key(&namespace) < start);
        // A namespace whose name extends another's is outside its range.
        let other = layout.key(&RecordKey::Namespace("internal.b".into()));
        assert!(!(start <= other && other < end));
        for bad in [
            &b"/other/ns/a/"[..],
            b"/muster/ns/a",
            b"/muster/ns//",
            b"/muster/ns/a/b/c/d",
            b"/muster/ns/a/b/%zz",
        ] {
            assert!(layout.decode_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
    }
}
