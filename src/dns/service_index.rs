//! A namespace's services by name, laid out for the query path: a lookup touches one
//! cold cache line before the service's records.
//!
//! Owns: where each service's [`ServiceRecords`] are found by name, and sharing that
//! between zone versions. Must not: decide answers, or know what the records hold.
//!
//! The persistent hash map it replaced (`imbl::HashMap<Arc<str>, _>`, SipHash) walked
//! three or four trie nodes and then the key's own allocation: with 100,000 services,
//! each of those was a cache (and TLB) miss per query, which made CPU per query 1.5x its
//! figure at 1,000 services. Here the name is hashed once (foldhash); the hash picks a
//! shard through two small arrays of pointers that stay cached (a few KiB per 10,000
//! services), and a slot in the shard, an open-addressing table whose slots hold the
//! name itself (up to [`INLINE`] bytes) beside the records' pointer: the probe compares
//! names without following a pointer.
//!
//! Versions share what did not change, as the map did: a change copies the top array
//! (one pointer per [`GROUP`] shards), one group, and rebuilds one shard of a few dozen
//! entries; a version nobody else holds is changed in place, so building a namespace is
//! one insertion per service. The shard count doubles (or halves) with the number of
//! services, which rebuilds the index once per doubling.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::service_records::ServiceRecords;

/// Shards per group: the middle array of pointers, copied by a change.
const GROUP: usize = 64;
/// Services per shard the shard count aims at; it doubles when the mean passes twice
/// this and halves below a quarter of it.
const PER_SHARD: usize = 16;
/// Bytes of a name kept in its slot; longer names are boxed (one more load to compare).
const INLINE: usize = 22;

/// A service name as a slot keeps it.
#[derive(Clone, Debug)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

impl Key {
    fn new(name: &[u8]) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..name.len()].copy_from_slice(name);
                Key::Inline { len, bytes }
            }
            _ => Key::Boxed(name.into()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Boxed(bytes) => bytes,
        }
    }

    fn is(&self, name: &[u8]) -> bool {
        match self {
            // The length first: most slots a probe passes differ there or in the first
            // bytes, all in the slot itself.
            Key::Inline { len, bytes } => {
                usize::from(*len) == name.len() && bytes[..name.len()] == *name
            }
            Key::Boxed(bytes) => name.len() > INLINE && **bytes == *name,
        }
    }
}

/// One service: its name and records (32 bytes with a pointer, two to a cache line).
#[derive(Clone, Debug)]
struct Slot<V> {
    key: Key,
    records: V,
}

/// An open-addressing table with linear probing; at most two thirds full, so a probe
/// for a missing name stops at an empty slot within a line or two.
type Shard<V> = Arc<[Option<Slot<V>>]>;

/// A namespace's services by name.
pub type ServiceIndex = NameIndex<Arc<ServiceRecords>>;

/// Values (each service's records) by name: [`ServiceIndex`], generic so its tests need
/// no records. `V` is cheap to clone (a pointer): a change copies one shard's.
#[derive(Clone, Debug)]
pub struct NameIndex<V> {
    hasher: foldhash::fast::RandomState,
    /// The shards, [`GROUP`] to a group (fewer in the only group of a small index):
    /// shard `s` is `groups[s / GROUP][s % GROUP]`.
    groups: Arc<[Arc<[Shard<V>]>]>,
    /// Shards in all: a power of two.
    shards: usize,
    len: usize,
}

impl<V: Clone> Default for NameIndex<V> {
    fn default() -> Self {
        Self::with_shards(foldhash::fast::RandomState::default(), 1)
    }
}

impl<V: Clone> NameIndex<V> {
    /// An empty index of `shards` shards (a power of two).
    fn with_shards(hasher: foldhash::fast::RandomState, shards: usize) -> Self {
        let empty: Shard<V> = Arc::from(Vec::new());
        let group = vec![empty; shards.min(GROUP)];
        let groups = (0..shards.div_ceil(GROUP))
            .map(|_| Arc::from(group.clone()))
            .collect();
        Self {
            hasher,
            groups,
            shards,
            len: 0,
        }
    }

    /// How many services.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records of the service named `name` (lowercase, as the registry names it).
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&V> {
        let name = name.as_ref();
        self.get_hashed(name, self.hash(name))
    }

    /// `name`'s hash here: a caller that looks a name up more than once (prefetch,
    /// then get) hashes it once.
    pub fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    /// [`NameIndex::get`] with `hash`, [`NameIndex::hash`] of `name`.
    pub fn get_hashed(&self, name: &[u8], hash: u64) -> Option<&V> {
        let shard = self.shard(hash);
        let n = find(shard, hash, name)?;
        shard[n].as_ref().map(|slot| &slot.records)
    }

    /// Asks the CPU to start loading the slot a lookup of the name hashed `hash` reads
    /// first, so a batch of queries waits for their misses together rather than one
    /// after another.
    pub fn prefetch(&self, hash: u64) {
        let shard = self.shard(hash);
        if let Some(n) = probe(shard, hash).next() {
            prefetch(&shard[n], 1);
        }
    }

    /// Every service's records, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots().map(|slot| &slot.records)
    }

    /// Every service's name and records, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.slots().map(|slot| {
            let name = std::str::from_utf8(slot.key.bytes()).expect("names are inserted as str");
            (name, &slot.records)
        })
    }

    /// Adds `name`'s records, or replaces them; returns the records replaced.
    pub fn insert(&mut self, name: &str, records: V) -> Option<V> {
        let name = name.as_bytes();
        let hash = self.hasher.hash_one(name);
        let hasher = self.hasher;
        let shard = self.shard_mut(hash);
        if let Some(n) = find(shard, hash, name) {
            let slot = unshared(shard)[n].as_mut().expect("found");
            return Some(std::mem::replace(&mut slot.records, records));
        }
        let slot = Slot {
            key: Key::new(name),
            records,
        };
        let used = shard.iter().filter(|s| s.is_some()).count();
        if capacity(used + 1) <= shard.len() {
            let free = probe(shard, hash)
                .find(|&n| shard[n].is_none())
                .expect("a shard has free slots");
            unshared(shard)[free] = Some(slot);
        } else {
            let mut entries = entries(shard);
            entries.push(slot);
            *shard = build_shard(&hasher, entries);
        }
        self.len += 1;
        if self.len > self.shards * PER_SHARD * 2 {
            self.resize(self.shards * 2);
        }
        None
    }

    /// Removes `name`; returns its records if it was there.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let name = name.as_bytes();
        let hash = self.hasher.hash_one(name);
        find(self.shard(hash), hash, name)?;
        let hasher = self.hasher;
        let shard = self.shard_mut(hash);
        let mut entries = entries(shard);
        let at = entries.iter().position(|slot| slot.key.is(name))?;
        let gone = entries.swap_remove(at);
        *shard = build_shard(&hasher, entries);
        self.len -= 1;
        if self.shards > 1 && self.len * 4 < self.shards * PER_SHARD {
            self.resize(self.shards / 2);
        }
        Some(gone.records)
    }

    fn slots(&self) -> impl Iterator<Item = &Slot<V>> {
        self.groups
            .iter()
            .flat_map(|group| group.iter())
            .flat_map(|shard| shard.iter().flatten())
    }

    /// The shard `hash` belongs to, by its high bits.
    fn shard(&self, hash: u64) -> &[Option<Slot<V>>] {
        let s = ((u128::from(hash) * self.shards as u128) >> 64) as usize;
        &self.groups[s / GROUP][s % GROUP]
    }

    /// The shard `hash` belongs to, to change: the top array and its group are copied
    /// first if another version shares them.
    fn shard_mut(&mut self, hash: u64) -> &mut Shard<V> {
        let s = ((u128::from(hash) * self.shards as u128) >> 64) as usize;
        let group = &mut unshared(&mut self.groups)[s / GROUP];
        &mut unshared(group)[s % GROUP]
    }

    /// The same services in `shards` shards.
    fn resize(&mut self, shards: usize) {
        let mut by_shard: Vec<Vec<Slot<V>>> = vec![Vec::new(); shards];
        for slot in self.slots() {
            let hash = self.hasher.hash_one(slot.key.bytes());
            by_shard[((u128::from(hash) * shards as u128) >> 64) as usize].push(slot.clone());
        }
        let mut shards_built = by_shard.into_iter().map(|e| build_shard(&self.hasher, e));
        let groups = (0..shards.div_ceil(GROUP))
            .map(|_| shards_built.by_ref().take(GROUP).collect())
            .collect();
        self.groups = groups;
        self.shards = shards;
    }
}

/// Slots to hold `entries` at most two thirds full (one free slot at least).
fn capacity(entries: usize) -> usize {
    if entries == 0 {
        0
    } else {
        entries + entries / 2 + 1
    }
}

/// The slots a probe for `hash` visits in `shard`, from its home (by the hash's low
/// bits) onward, wrapping around once.
fn probe<T>(shard: &[T], hash: u64) -> impl Iterator<Item = usize> {
    let len = shard.len();
    let home = (((hash & u64::from(u32::MAX)) * len as u64) >> 32) as usize;
    (home..len).chain(0..home)
}

/// Where `name` is in `shard`.
fn find<V>(shard: &[Option<Slot<V>>], hash: u64, name: &[u8]) -> Option<usize> {
    probe(shard, hash)
        .take_while(|&n| shard[n].is_some())
        .find(|&n| shard[n].as_ref().is_some_and(|slot| slot.key.is(name)))
}

/// A shard holding `entries`, sized for them.
fn build_shard<V: Clone>(hasher: &foldhash::fast::RandomState, entries: Vec<Slot<V>>) -> Shard<V> {
    let mut slots = vec![None; capacity(entries.len())];
    for slot in entries {
        let hash = hasher.hash_one(slot.key.bytes());
        let free = probe(&slots, hash)
            .find(|&n| slots[n].is_none())
            .expect("a shard has free slots");
        slots[free] = Some(slot);
    }
    slots.into()
}

/// The entries of `shard`: taken out if no other version holds it, else copied.
fn entries<V: Clone>(shard: &mut Shard<V>) -> Vec<Slot<V>> {
    match Arc::get_mut(shard) {
        Some(slots) => slots.iter_mut().filter_map(Option::take).collect(),
        None => shard.iter().flatten().cloned().collect(),
    }
}

/// `shared` to change, copied first if another version holds it too.
fn unshared<T: Clone>(shared: &mut Arc<[T]>) -> &mut [T] {
    if Arc::get_mut(shared).is_none() {
        *shared = shared.iter().cloned().collect();
    }
    Arc::get_mut(shared).expect("a fresh copy is unshared")
}

/// A hint to start loading the cache lines of `value`'s first `lines` x 64 bytes (at
/// most its size): the fast path asks for what a batch of queries will read before it
/// answers them, so their cache misses overlap. Nothing where the CPU has no such hint.
pub fn prefetch<T: ?Sized>(value: &T, lines: usize) {
    let start = (value as *const T).cast::<i8>();
    for line in 0..lines.min(std::mem::size_of_val(value).div_ceil(64)) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it reads nothing into the program and never
        // faults, whatever the address; SSE, which it needs, is part of x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(line * 64),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = start.wrapping_add(line * 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: usize) -> String {
        // Every fifth name is too long to be kept in its slot.
        if n.is_multiple_of(5) {
            format!("service-with-a-long-name-{n}")
        } else {
            format!("svc{n}")
        }
    }

    /// Every name in `expected` is found with its value, and no other.
    fn check(index: &NameIndex<usize>, expected: &std::collections::BTreeMap<String, usize>) {
        assert_eq!(index.len(), expected.len());
        for (name, value) in expected {
            assert_eq!(index.get(name.as_bytes()), Some(value), "{name}");
        }
        let mut values: Vec<usize> = index.values().copied().collect();
        values.sort_unstable();
        let mut want: Vec<usize> = expected.values().copied().collect();
        want.sort_unstable();
        assert_eq!(values, want);
        for missing in ["", "svc", "svc-1", "SVC1", "service-with-a-long-name-x"] {
            assert_eq!(index.get(missing.as_bytes()), None, "{missing}");
        }
    }

    #[test]
    fn finds_what_was_inserted_through_growth_and_shrinking() {
        let mut index = NameIndex::default();
        let mut expected = std::collections::BTreeMap::new();
        for n in 0..5_000 {
            assert_eq!(index.insert(&name(n), n), None);
            expected.insert(name(n), n);
        }
        assert!(index.shards >= 64, "{} shards", index.shards);
        check(&index, &expected);
        // Replacing keeps one entry per name.
        for n in (0..5_000).step_by(7) {
            assert_eq!(index.insert(&name(n), n + 10_000), Some(n));
            expected.insert(name(n), n + 10_000);
        }
        check(&index, &expected);
        for n in (0..5_000).filter(|n| n % 50 != 0) {
            assert!(index.remove(&name(n)).is_some());
            expected.remove(&name(n));
        }
        assert_eq!(index.remove(&name(1)), None);
        assert!(index.shards < 64, "{} shards", index.shards);
        check(&index, &expected);
    }

    #[test]
    fn a_version_is_unchanged_by_changes_to_its_copy() {
        let mut before = NameIndex::default();
        for n in 0..2_000 {
            before.insert(&name(n), n);
        }
        let mut after = before.clone();
        after.insert(&name(3), 3_000);
        after.insert(&name(5_000), 5_000);
        after.remove(&name(4));
        let old: std::collections::BTreeMap<String, usize> =
            (0..2_000).map(|n| (name(n), n)).collect();
        check(&before, &old);
        let mut new = old.clone();
        new.insert(name(3), 3_000);
        new.insert(name(5_000), 5_000);
        new.remove(&name(4));
        check(&after, &new);
    }

    #[test]
    fn names_are_compared_whole() {
        let mut index = NameIndex::default();
        let long = "a".repeat(63);
        for (n, name) in ["a", "ab", "b", &long[..22], &long[..23], &long]
            .iter()
            .enumerate()
        {
            index.insert(name, n);
        }
        assert_eq!(index.get(b"ab"), Some(&1));
        assert_eq!(index.get(&long.as_bytes()[..22]), Some(&3));
        assert_eq!(index.get(&long.as_bytes()[..23]), Some(&4));
        assert_eq!(index.get(long.as_bytes()), Some(&5));
        assert_eq!(index.get(&long.as_bytes()[..24]), None);
        assert_eq!(index.get(b"abc"), None);
    }
}
