//! What a replica knows of the replicas it shares duties with (with `[etcd]`: the live
//! members on the prefix, `store::etcd` keeps the membership), and how duties are
//! spread over them: rendezvous hashing, the same on every replica.

use crate::fnv::Fnv1a;

/// This replica's view of the members, as of the last change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// This replica's lease while it is a member (renewed within its TTL).
    pub lease: Option<i64>,
    /// The ids of the live members, this one included, sorted; empty while this
    /// replica is not a member (it then owns no shared duty).
    pub members: Vec<String>,
}

/// The member that owns an item among `members`: rendezvous (highest random weight)
/// hashing, so that a member joining or leaving moves only the items it gains or held.
/// The item is named by the concatenation of `parts` (no string to build per item).
pub fn owner<'a>(members: &'a [String], parts: &[&str]) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|member| weight(member, parts))
        .map(String::as_str)
}

/// A stable 64-bit hash of (member, item) (FNV-1a, then a mix so that close inputs
/// spread): the same on every replica and across releases.
fn weight(member: &str, parts: &[&str]) -> u64 {
    let start = Fnv1a::default().write(member.as_bytes()).write(&[0xff]);
    let mut hash = parts
        .iter()
        .fold(start, |hash, part| hash.write(part.as_bytes()))
        .finish();
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    #[test]
    fn every_item_has_one_owner_and_the_load_is_spread() {
        let members = names(3);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let owner = owner(&members, &[&format!("ns/svc/i-{i}")]).unwrap();
            counts[members.iter().position(|m| m == owner).unwrap()] += 1;
        }
        for count in counts {
            assert!((800..=1200).contains(&count), "{counts:?}");
        }
        assert_eq!(owner(&[], &["x"]), None);
    }

    #[test]
    fn a_member_leaving_moves_only_its_items() {
        let all = names(4);
        let fewer: Vec<String> = all.iter().filter(|m| *m != "replica-2").cloned().collect();
        let mut moved = 0;
        for i in 0..1000 {
            let item = format!("ns/svc/i-{i}");
            let before = owner(&all, &[&item]).unwrap();
            let after = owner(&fewer, &[&item]).unwrap();
            if before == "replica-2" {
                moved += 1;
            } else {
                assert_eq!(before, after, "{item}");
            }
        }
        assert!((150..=350).contains(&moved), "{moved}");
    }
}
