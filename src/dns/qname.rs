//! A question name as the zone looks it up: lowercase, in wire form (each label after its
//! length byte, no root label), on the stack.
//!
//! The wire form makes every suffix of the name (its last `n` labels) one contiguous
//! slice, so finding the namespace of a name is a hash lookup per candidate depth
//! ([`ZoneSnapshot::namespace_of`](super::zone::ZoneSnapshot::namespace_of)) without building a string,
//! and the length bytes keep `a.b` (two labels) apart from `a\.b` (one). Owns: the bytes
//! and where each label starts. Must not: allocate.

/// Bytes of a name in wire form without its root label (RFC 1035: 255 with it).
const MAX_WIRE_LEN: usize = 254;
/// Labels a name can have (each at least two bytes in wire form).
pub const MAX_LABELS: usize = 127;

/// A lowercase name in wire form, filled label by label ([`QueryName::push`]).
#[derive(Clone)]
pub struct QueryName {
    bytes: [u8; MAX_WIRE_LEN],
    len: usize,
    /// Where each label's length byte is, left to right.
    starts: [u8; MAX_LABELS],
    count: usize,
}

impl Default for QueryName {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_WIRE_LEN],
            len: 0,
            starts: [0; MAX_LABELS],
            count: 0,
        }
    }
}

impl std::fmt::Debug for QueryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<_> = (0..self.count)
            .map(|n| String::from_utf8_lossy(self.label(n)))
            .collect();
        write!(f, "QueryName({:?})", labels.join("."))
    }
}

impl QueryName {
    /// The name made of `labels` (left to right), lowercased; `None` if it is longer
    /// than a DNS name can be.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut name = Self::default();
        for label in labels {
            name.push(label).then_some(())?;
        }
        Some(name)
    }

    /// Empties the name for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
    }

    /// Appends `label` lowercased; false (and the name unchanged) if the label is empty
    /// or longer than 63 bytes, or the name would be too long.
    pub fn push(&mut self, label: &[u8]) -> bool {
        let end = self.len + 1 + label.len();
        if label.is_empty() || label.len() > 63 || end > MAX_WIRE_LEN || self.count == MAX_LABELS {
            return false;
        }
        self.bytes[self.len] = label.len() as u8;
        for (to, from) in self.bytes[self.len + 1..end].iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        self.starts[self.count] = self.len as u8;
        self.count += 1;
        self.len = end;
        true
    }

    /// How many labels the name has.
    pub fn label_count(&self) -> usize {
        self.count
    }

    /// The `n`th label from the left, lowercase, without its length byte.
    pub fn label(&self, n: usize) -> &[u8] {
        let start = usize::from(self.starts[n]);
        let len = usize::from(self.bytes[start]);
        &self.bytes[start + 1..start + 1 + len]
    }

    /// The last `depth` labels in wire form (no root label): the key a namespace of that
    /// depth is stored under. `depth` must be at most [`QueryName::label_count`].
    pub fn suffix(&self, depth: usize) -> &[u8] {
        let start = match self.count - depth {
            n if n == self.count => self.len,
            n => usize::from(self.starts[n]),
        };
        &self.bytes[start..self.len]
    }

    /// The whole name in wire form, without the root label.
    pub fn wire(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_suffixes_are_lowercase_wire_slices() {
        let name = QueryName::from_labels([&b"Web"[..], b"Sub", b"EXAMPLE"]).unwrap();
        assert_eq!(name.label_count(), 3);
        assert_eq!(name.label(0), b"web");
        assert_eq!(name.label(2), b"example");
        assert_eq!(name.suffix(0), b"");
        assert_eq!(name.suffix(2), b"\x03sub\x07example");
        assert_eq!(name.wire(), b"\x03web\x03sub\x07example");
        // One label holding a dot is not two labels.
        let dotted = QueryName::from_labels([&b"sub.example"[..]]).unwrap();
        assert_ne!(dotted.suffix(1), name.suffix(2));
    }

    #[test]
    fn names_are_bounded_like_dns_names() {
        let label = [b'a'; 63];
        assert!(
            QueryName::from_labels([&label[..]; 3]).is_some(),
            "192 bytes"
        );
        assert!(
            QueryName::from_labels([&label[..]; 4]).is_none(),
            "256 bytes"
        );
        assert!(QueryName::from_labels([&[b'a'; 64][..]]).is_none());
        assert!(QueryName::from_labels([&b""[..]]).is_none());
        assert!(QueryName::from_labels([&b"a"[..]; 127]).is_some());
        assert!(QueryName::from_labels([&b"a"[..]; 128]).is_none());
    }
}
