use std::collections::BTreeMap;

use super::*;
use crate::registry::model::{InstanceSpec, registered};

fn instance(id: &str, port: u16) -> Arc<Instance> {
    let spec = InstanceSpec {
        port: Some(port),
        ..InstanceSpec::default()
    };
    Arc::new(registered(id, spec))
}

/// A map of `size` instances `i-0000`, `i-0001`, ... on port 1.
fn filled(size: usize) -> InstanceMap {
    let mut map = InstanceMap::default();
    for n in 0..size {
        map.insert(instance(&format!("i-{n:04}"), 1));
    }
    map
}

fn ids(map: &InstanceMap) -> Vec<&str> {
    map.values().map(|i| i.id.as_str()).collect()
}

/// The map holds what `model` holds, in the same order, and finds each by its id.
fn check(map: &InstanceMap, model: &BTreeMap<String, Arc<Instance>>) {
    assert_eq!(map.len(), model.len());
    assert_eq!(map.is_empty(), model.is_empty());
    let values: Vec<&Arc<Instance>> = map.values().collect();
    let expected: Vec<&Arc<Instance>> = model.values().collect();
    assert_eq!(values.len(), expected.len());
    for (value, expected) in values.iter().zip(&expected) {
        assert!(
            Arc::ptr_eq(value, expected),
            "{} at {}",
            value.id,
            expected.id
        );
    }
    assert_eq!(map.values().size_hint(), (model.len(), Some(model.len())));
    for (id, instance) in model {
        assert!(Arc::ptr_eq(map.get(id).unwrap(), instance));
        assert!(map.contains(id));
    }
}

/// What `diff` says, as text in order.
fn diff(before: &InstanceMap, after: &InstanceMap) -> Vec<String> {
    let text = |i: &Instance| format!("{}:{}", i.id, i.spec.port.unwrap_or(0));
    before
        .diff(after)
        .map(|change| match change {
            Difference::Added(new) => format!("+{}", text(new)),
            Difference::Removed(old) => format!("-{}", text(old)),
            Difference::Updated { old, new } => format!("{} -> {}", text(old), text(new)),
        })
        .collect()
}

/// The differences between two states of the model, as `diff` writes them.
fn model_diff(
    before: &BTreeMap<String, Arc<Instance>>,
    after: &BTreeMap<String, Arc<Instance>>,
) -> Vec<String> {
    let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    let text = |i: &Instance| format!("{}:{}", i.id, i.spec.port.unwrap_or(0));
    ids.into_iter()
        .filter_map(|id| match (before.get(id), after.get(id)) {
            (Some(old), None) => Some(format!("-{}", text(old))),
            (None, Some(new)) => Some(format!("+{}", text(new))),
            (Some(old), Some(new)) if old != new => Some(format!("{} -> {}", text(old), text(new))),
            _ => None,
        })
        .collect()
}

#[test]
fn ids_are_kept_in_byte_order_and_compared_with_their_case() {
    let mut map = InstanceMap::default();
    for id in ["web", "b", "WEB", "a", "Web", "a-1", "10", "9"] {
        assert!(map.insert(instance(id, 1)).is_none());
    }
    // Upper case sorts before lower case, "10" before "9": bytes, as `str` orders them.
    assert_eq!(ids(&map), ["10", "9", "WEB", "Web", "a", "a-1", "b", "web"]);
    assert_eq!(map.get("WEB").unwrap().id, "WEB");
    assert_eq!(map.get("web").unwrap().id, "web");
    assert!(map.get("wEB").is_none());
    assert_eq!(map.remove("WEB").unwrap().id, "WEB");
    assert_eq!(map.get("web").unwrap().id, "web", "the other case stays");
    assert!(map.remove("WEB").is_none());
}

#[test]
fn ids_that_share_their_first_bytes_or_end_in_zeros_keep_their_order() {
    // A search compares the first 8 bytes (zero-padded) before the whole id: ids equal
    // there, or equal but for trailing zero bytes, must still order and match exactly.
    let shared = [
        "arn:aws:ecs:task/b",
        "arn:aws:ecs:task/a",
        "arn:aws:ecs:task/a1",
        "",
        "a",
        "a\0",
        "a\0\0",
        "abcdefgh",
        "abcdefgh\0",
        "abcdefghi",
        "abcdefg",
        "é",
        "ÿ",
        "e",
    ];
    let mut map = InstanceMap::default();
    let mut model = BTreeMap::new();
    for id in shared {
        let new = instance(id, 1);
        model.insert(id.to_owned(), new.clone());
        assert!(map.insert(new).is_none());
        check(&map, &model);
    }
    for absent in [
        "arn:aws:ecs:task/",
        "arn:aws:ecs:task/a0",
        "a\0\0\0",
        "abcdefgh\0\0",
    ] {
        assert!(map.get(absent).is_none(), "{absent:?}");
    }
    for id in ["abcdefgh\0", "a\0", "arn:aws:ecs:task/a"] {
        assert_eq!(map.remove(id).unwrap().id, id);
        model.remove(id);
        check(&map, &model);
    }
}

#[test]
fn an_insert_of_a_known_id_replaces_and_returns_the_old_instance() {
    for size in [3, LARGE + 10] {
        let mut map = filled(size);
        let before = map.clone();
        let old = map.insert(instance("i-0002", 2)).unwrap();
        assert_eq!(old.spec.port, Some(1));
        assert_eq!(map.len(), size);
        assert_eq!(map.get("i-0002").unwrap().spec.port, Some(2));
        assert_eq!(
            before.get("i-0002").unwrap().spec.port,
            Some(1),
            "a clone is a version"
        );
        assert_eq!(diff(&before, &map), ["i-0002:1 -> i-0002:2"]);
    }
}

#[test]
fn the_map_turns_into_a_tree_above_large_and_back_at_small() {
    let mut map = InstanceMap::default();
    let mut model = BTreeMap::new();
    // Inserted in an order that is not the ids' order.
    let id = |n: usize| format!("i-{:04}", (n * 37) % 1000);
    for n in 0..LARGE {
        let instance = instance(&id(n), 1);
        model.insert(instance.id.clone(), instance.clone());
        map.insert(instance);
        assert!(!map.is_tree(), "{} instances", map.len());
        check(&map, &model);
    }
    // Replacing at the boundary does not grow it.
    map.insert(instance(&id(0), 2));
    model.insert(id(0), map.get(&id(0)).unwrap().clone());
    assert!(!map.is_tree());
    let slice = map.clone();
    let grown = instance(&id(LARGE), 1);
    model.insert(grown.id.clone(), grown.clone());
    map.insert(grown);
    assert_eq!(map.len(), LARGE + 1);
    assert!(map.is_tree());
    check(&map, &model);
    assert_eq!(diff(&slice, &map), [format!("+{}:1", id(LARGE))]);
    assert_eq!(diff(&map, &slice), [format!("-{}:1", id(LARGE))]);
    // Down to SMALL + 1 it stays a tree (no conversion back and forth at the boundary).
    let mut n = 0;
    while map.len() > SMALL + 1 {
        let gone = model.keys().nth(n % model.len()).unwrap().clone();
        assert!(Arc::ptr_eq(
            &map.remove(&gone).unwrap(),
            &model.remove(&gone).unwrap()
        ));
        assert!(map.is_tree(), "{} instances", map.len());
        check(&map, &model);
        n += 7;
    }
    // Growing again from there does not convert either.
    let back = instance("i-9999", 1);
    map.insert(back.clone());
    assert!(map.is_tree());
    map.remove("i-9999");
    let tree = map.clone();
    let gone = model.keys().next().unwrap().clone();
    model.remove(&gone);
    map.remove(&gone);
    assert_eq!(map.len(), SMALL);
    assert!(!map.is_tree());
    check(&map, &model);
    assert_eq!(diff(&tree, &map), [format!("-{gone}:1")]);
    assert!(map.remove("absent").is_none());
    assert_eq!(map.len(), SMALL);
}

#[test]
fn versions_agree_with_a_model_through_many_changes() {
    // A deterministic walk of inserts, replacements and removals over ids that make
    // services cross both thresholds several times; every version is checked against a
    // B-tree map, and each change's diff against the model's.
    let mut map = InstanceMap::default();
    let mut model: BTreeMap<String, Arc<Instance>> = BTreeMap::new();
    let mut seed: u64 = 17;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut trees = 0;
    for step in 0..6_000 {
        // Phases that grow (mostly inserts) and shrink (mostly removals).
        let growing = (step / 600) % 2 == 0;
        let before = (map.clone(), model.clone());
        let id = format!("id-{}", next() % (LARGE * 3));
        let roll = next() % 10;
        if roll < if growing { 7 } else { 1 } {
            let port = (next() % 3) as u16;
            let new = instance(&id, port);
            let old = model.insert(id.clone(), new.clone());
            let replaced = map.insert(new);
            assert_eq!(old.is_some(), replaced.is_some());
            if let (Some(old), Some(replaced)) = (old, replaced) {
                assert!(Arc::ptr_eq(&old, &replaced));
            }
        } else {
            let old = model.remove(&id);
            let removed = map.remove(&id);
            assert_eq!(old.map(|i| i.id.clone()), removed.map(|i| i.id.clone()));
        }
        check(&map, &model);
        assert_eq!(diff(&before.0, &map), model_diff(&before.1, &model));
        assert!(map.len() <= LARGE || map.is_tree());
        assert!(map.len() > SMALL || !map.is_tree());
        trees += usize::from(map.is_tree());
    }
    assert!(
        trees > 0 && trees < 6_000,
        "both forms were exercised: {trees}"
    );
}

#[test]
fn an_equal_instance_under_a_new_pointer_is_no_difference() {
    for size in [2, LARGE + 2] {
        let mut map = filled(size);
        let before = map.clone();
        map.insert(instance("i-0001", 1));
        assert!(!Arc::ptr_eq(
            before.get("i-0001").unwrap(),
            map.get("i-0001").unwrap()
        ));
        assert!(diff(&before, &map).is_empty(), "{size} instances");
        assert!(diff(&map, &map).is_empty());
    }
}

#[test]
fn an_empty_map_has_nothing() {
    let map = InstanceMap::default();
    assert!(map.is_empty());
    assert!(map.get("").is_none());
    assert_eq!(map.values().count(), 0);
    let one = {
        let mut one = map.clone();
        one.insert(instance("a", 1));
        one
    };
    assert_eq!(diff(&map, &one), ["+a:1"]);
    assert_eq!(diff(&one, &map), ["-a:1"]);
    assert_eq!(format!("{one:?}").matches("\"a\"").count(), 2, "{one:?}");
}

#[test]
fn every_single_update_of_a_large_map_is_a_difference() {
    // imbl 6's `OrdMap::diff` missed ~1/8 of these (jneem/imbl#160).
    let map = filled(1_000);
    assert!(map.is_tree());
    for n in 0..1_000 {
        let id = format!("i-{n:04}");
        let mut after = map.clone();
        after.insert(instance(&id, 2));
        assert_eq!(diff(&map, &after), [format!("{id}:1 -> {id}:2")]);
    }
}
