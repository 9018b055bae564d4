//! A service's instances by id: [`InstanceMap`].
//!
//! Owns the representation only: lookups, insertions and removals by id, the instances in
//! id order, and the difference between two versions. What an instance is and who may
//! change it is the registry's ([`super::instances`]).
//!
//! Most services hold a few instances, and a snapshot holds every service: a persistent
//! B-tree (`imbl::OrdMap`, 64 slots a leaf) cost ~1.8 KiB for a service of 10. Up to
//! [`LARGE`] instances the map is a sorted boxed slice of the instances themselves (16
//! bytes an instance: the pointer and the id's first bytes, see [`Entry`]); a change
//! copies it whole, which up to that size costs less than copying a B-tree's leaf and
//! path. Above it, the map is a B-tree set of the instances ([`ById`]), so a change to a
//! service of thousands copies one leaf; it turns back into a slice at [`SMALL`] or
//! fewer, not at `LARGE`, so a service that hovers at the boundary does not convert at
//! every change. Both are keyed by each instance's own [`Instance::id`]: no copy of it.
//!
//! Ids compare as their bytes (`WEB` and `web` are two instances); a source that matches
//! ids without case lowercases them first.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::iter::Peekable;
use std::sync::Arc;

use super::model::Instance;

/// Above this many instances a service's map is a B-tree. Measured: see bench/README.md,
/// "A million instances", the instance map.
const LARGE: usize = 128;
/// At this many or fewer, a B-tree turns back into a slice.
const SMALL: usize = LARGE / 2;

type Tree = imbl::OrdSet<ById>;

/// One service's instances, by id, in id order. Cloning is cheap for a B-tree (shared
/// nodes) and a copy of at most [`LARGE`] pointers for a slice.
#[derive(Clone, Default)]
pub struct InstanceMap(Repr);

#[derive(Clone)]
enum Repr {
    /// Sorted by id, at most [`LARGE`] long.
    Slice(Box<[Entry]>),
    /// More than [`SMALL`] instances.
    Tree(Tree),
}

impl Default for Repr {
    fn default() -> Self {
        Self::Slice(Box::default())
    }
}

impl InstanceMap {
    /// How many instances the service has.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Slice(slice) => slice.len(),
            Repr::Tree(tree) => tree.len(),
        }
    }

    /// No instances (an implicit service goes with its last one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The instance with this id (compared byte for byte).
    pub fn get(&self, id: &str) -> Option<&Arc<Instance>> {
        match &self.0 {
            Repr::Slice(slice) => find(slice, id).ok().map(|at| &slice[at].instance),
            Repr::Tree(tree) => tree.get(id).map(|entry| &entry.0),
        }
    }

    /// Whether an instance has this id (compared byte for byte).
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Adds `instance` under its own id, or replaces the one of that id (returned).
    pub fn insert(&mut self, instance: Arc<Instance>) -> Option<Arc<Instance>> {
        match &mut self.0 {
            Repr::Slice(slice) => match find(slice, &instance.id) {
                Ok(at) => Some(std::mem::replace(&mut slice[at].instance, instance)),
                Err(at) if slice.len() < LARGE => {
                    let mut entries = std::mem::take(slice).into_vec();
                    entries.reserve_exact(1);
                    entries.insert(at, Entry::new(instance));
                    *slice = entries.into_boxed_slice();
                    None
                }
                Err(_) => {
                    let mut tree: Tree = (slice.iter()).map(|e| ById(e.instance.clone())).collect();
                    tree.insert(ById(instance));
                    self.0 = Repr::Tree(tree);
                    None
                }
            },
            Repr::Tree(tree) => tree.insert(ById(instance)).map(|old| old.0),
        }
    }

    /// Takes out the instance with this id, if there is one.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Instance>> {
        match &mut self.0 {
            Repr::Slice(slice) => {
                let at = find(slice, id).ok()?;
                let mut entries = std::mem::take(slice).into_vec();
                let old = entries.remove(at);
                *slice = entries.into_boxed_slice();
                Some(old.instance)
            }
            Repr::Tree(tree) => {
                let old = tree.remove(id)?;
                if tree.len() <= SMALL {
                    let slice = tree.iter().map(|entry| Entry::new(entry.0.clone()));
                    self.0 = Repr::Slice(slice.collect());
                }
                Some(old.0)
            }
        }
    }

    /// The instances in id order (byte order of the ids).
    pub fn values(&self) -> Values<'_> {
        Values(match &self.0 {
            Repr::Slice(slice) => ValuesRepr::Slice(slice.iter()),
            Repr::Tree(tree) => ValuesRepr::Tree(tree.iter()),
        })
    }

    /// What changed from `self` to `after`, in id order. A walk of both, where an
    /// instance both hold (the same `Arc`) is passed by its pointer, without reading it:
    /// a few nanoseconds an instance, also for a B-tree. Not `imbl`'s `OrdMap::diff`,
    /// which skips shared nodes but in imbl 6 drops some differences after them (an
    /// update of one value in ~1/8 of cases: jneem/imbl#160, fixed by PR #166 after 7.0.1).
    pub fn diff<'a>(&'a self, after: &'a Self) -> Diff<'a> {
        Diff {
            before: self.values().peekable(),
            after: after.values().peekable(),
        }
    }

    /// Whether the map is a B-tree now (for tests of the switch).
    #[cfg(test)]
    fn is_tree(&self) -> bool {
        matches!(self.0, Repr::Tree(_))
    }
}

impl fmt::Debug for InstanceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values().map(|i| (&i.id, i)))
            .finish()
    }
}

/// An instance of a slice map with the first bytes of its id, which most comparisons of
/// a search settle without reading the instance: in a large registry the instances are
/// cold, and a search read each one it passed and then its id's text, two cache misses a
/// step (~5% of muster's CPU in a churn of REST batches at 100,000 instances).
#[derive(Clone)]
struct Entry {
    prefix: u64,
    instance: Arc<Instance>,
}

impl Entry {
    fn new(instance: Arc<Instance>) -> Self {
        Self {
            prefix: prefix(&instance.id),
            instance,
        }
    }
}

/// The first 8 bytes of `id`, big-endian, zero-padded: ordered as the ids are (where
/// two ids differ within them), equal when they share them.
fn prefix(id: &str) -> u64 {
    let mut bytes = [0; 8];
    let head = &id.as_bytes()[..id.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// Where `id` is in a slice sorted by id, or where it would go.
fn find(slice: &[Entry], id: &str) -> Result<usize, usize> {
    let wanted = prefix(id);
    slice.binary_search_by(|e| (e.prefix.cmp(&wanted)).then_with(|| e.instance.id.as_str().cmp(id)))
}

/// An instance of a B-tree map, ordered and found by its own id. The tree's inner
/// nodes keep copies of some keys as separators: each can keep a replaced version of its
/// instance alive until that node is next copied, at most one per leaf.
#[derive(Clone)]
struct ById(Arc<Instance>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.as_str().cmp(other.0.id.as_str())
    }
}

/// The instances of an [`InstanceMap`] in id order.
pub struct Values<'a>(ValuesRepr<'a>);

enum ValuesRepr<'a> {
    Slice(std::slice::Iter<'a, Entry>),
    Tree(imbl::ordset::Iter<'a, ById, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a Arc<Instance>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            ValuesRepr::Slice(it) => it.next().map(|e| &e.instance),
            ValuesRepr::Tree(it) => it.next().map(|entry| &entry.0),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            ValuesRepr::Slice(it) => it.size_hint(),
            ValuesRepr::Tree(it) => it.size_hint(),
        }
    }
}

/// One difference between two versions of an [`InstanceMap`].
#[derive(Debug)]
pub enum Difference<'a> {
    Added(&'a Arc<Instance>),
    Removed(&'a Arc<Instance>),
    /// The same id, another instance (not equal to the old one).
    Updated {
        old: &'a Arc<Instance>,
        new: &'a Arc<Instance>,
    },
}

/// The differences between two versions of an [`InstanceMap`], in id order.
pub struct Diff<'a> {
    before: Peekable<Values<'a>>,
    after: Peekable<Values<'a>>,
}

impl<'a> Iterator for Diff<'a> {
    type Item = Difference<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.before.peek(), self.after.peek()) {
                // The same instance: the same id, nothing to read.
                (Some(old), Some(new)) if Arc::ptr_eq(old, new) => Ordering::Equal,
                (Some(old), Some(new)) => old.id.cmp(&new.id),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => return None,
            };
            match order {
                Ordering::Less => return self.before.next().map(Difference::Removed),
                Ordering::Greater => return self.after.next().map(Difference::Added),
                Ordering::Equal => {
                    let (old, new) = (self.before.next()?, self.after.next()?);
                    if !Arc::ptr_eq(old, new) && old != new {
                        return Some(Difference::Updated { old, new });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "instance_map_tests.rs"]
mod tests;
