//! FNV-1a, 64 bits: a small, fixed hash for ids, labels and shares of work that must be
//! the same on every replica and across releases (std's hasher is seeded and may change).

/// A running hash, fed in parts, so that joined inputs need no buffer.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub fn write(self, bytes: &[u8]) -> Self {
        Self(bytes.iter().fold(self.0, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }))
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The hash of `bytes` in one go.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    Fnv1a::default().write(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hash_as_their_concatenation_and_the_values_never_change() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        // The published FNV-1a test vector.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let parts = Fnv1a::default().write(b"ns/").write(b"svc").finish();
        assert_eq!(parts, fnv1a64(b"ns/svc"));
    }
}
