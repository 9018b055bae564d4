use super::*;
use crate::config::{Config, NamespaceConfig};

fn snapshot(names: &[&str]) -> Snapshot {
    if names.is_empty() {
        return Snapshot::new([], []);
    }
    let config = Config {
        namespaces: names.iter().map(|n| NamespaceConfig::named(n)).collect(),
        ..Config::default()
    };
    Snapshot::new(config.settings().unwrap().namespaces, [])
}

fn name(text: &str) -> QueryName {
    QueryName::from_labels(text.split('.').map(str::as_bytes)).unwrap()
}

fn namespace_of(zone: &ZoneSnapshot, text: &str) -> Option<String> {
    zone.namespace_of(&name(text)).map(|z| z.name.clone())
}

#[test]
fn the_deepest_origin_that_is_a_suffix_wins() {
    let zone = ZoneSnapshot::from_snapshot(&snapshot(&["example", "a.example", "c.b.a.example"]));
    assert_eq!(
        namespace_of(&zone, "WEB.A.Example").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        namespace_of(&zone, "b.a.example").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        namespace_of(&zone, "x.c.b.a.example").as_deref(),
        Some("c.b.a.example")
    );
    assert_eq!(namespace_of(&zone, "example").as_deref(), Some("example"));
    assert_eq!(namespace_of(&zone, "a.example.com"), None);
    assert_eq!(namespace_of(&zone, "com"), None);
    assert_eq!(namespace_of(&zone, "aexample"), None);
    // A label holding a dot is one label: `a\.example` is not under `example`'s child.
    let dotted = QueryName::from_labels([&b"a.example"[..]]).unwrap();
    assert!(zone.namespace_of(&dotted).is_none());
}

#[test]
fn a_removed_namespace_no_longer_takes_its_names() {
    let zone = ZoneSnapshot::from_snapshot(&snapshot(&["example", "a.example"]));
    let mut touched = Touched::default();
    touched.namespaces.insert("a.example".to_owned());
    let after = zone.updated(&snapshot(&["example"]), &touched);
    assert_eq!(
        namespace_of(&after, "web.a.example").as_deref(),
        Some("example")
    );
    assert!(after.namespace("a.example").is_none());
    assert_eq!(after.namespaces().count(), 1);
    // The zone it came from is unchanged (persistent maps).
    assert_eq!(
        namespace_of(&zone, "web.a.example").as_deref(),
        Some("a.example")
    );
    let mut gone = Touched::default();
    gone.namespaces.insert("example".to_owned());
    let empty = after.updated(&snapshot(&[]), &gone);
    assert_eq!(namespace_of(&empty, "web.example"), None);
}
