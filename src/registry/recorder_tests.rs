use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::*;
use crate::config::Config;
use crate::registry::change::{Change, InstanceKey};
use crate::registry::model::{InstanceSpec, SourceId};
use crate::registry::state::State;

fn model() -> State {
    let settings = Config::default().settings().unwrap();
    State::new(Snapshot::new(settings.namespaces, []))
}

fn key(id: &str) -> InstanceKey {
    InstanceKey {
        namespace: "internal".into(),
        service: "web".into(),
        id: id.into(),
    }
}

fn upsert(id: &str, last_octet: u8) -> Change {
    Change::Upsert {
        key: key(id),
        spec: InstanceSpec {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
            healthy: true,
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    }
}

/// Applies `change` and returns what the recorder finds: (event, instance, reason).
fn drafts_of(model: &mut State, change: Change) -> Vec<(Event, Option<String>, Option<String>)> {
    drafts_of_all(model, [change])
}

/// Applies `changes` as one publish and returns what the recorder finds.
fn drafts_of_all(
    model: &mut State,
    changes: impl IntoIterator<Item = Change>,
) -> Vec<(Event, Option<String>, Option<String>)> {
    let before = model.snapshot.clone();
    let mut touched = Touched::default();
    for change in changes {
        model
            .apply(change, SystemTime::now(), &mut touched, None)
            .unwrap();
    }
    touched.resolve(&model.snapshot);
    let mut found = Vec::new();
    drafts(&before, &model.snapshot, &touched, &mut |draft| {
        let entry = draft.entry(0, SystemTime::UNIX_EPOCH);
        found.push((entry.event, entry.instance, entry.reason));
    });
    found
}

fn of(
    event: Event,
    id: Option<&str>,
    reason: Option<&str>,
) -> (Event, Option<String>, Option<String>) {
    (event, id.map(Into::into), reason.map(Into::into))
}

#[test]
fn an_instances_life_is_one_entry_per_thing_that_happened() {
    let mut model = model();
    assert_eq!(
        drafts_of(&mut model, upsert("a", 1)),
        [
            of(Event::ServiceCreated, None, None),
            of(Event::Registered, Some("a"), None)
        ]
    );
    assert_eq!(
        drafts_of(&mut model, upsert("a", 2)),
        [of(Event::Replaced, Some("a"), None)]
    );
    let fail = Change::CheckResult {
        key: key("a"),
        healthy: false,
        reason: "HTTP 500".into(),
    };
    assert_eq!(
        drafts_of(&mut model, fail),
        [of(Event::Unhealthy, Some("a"), Some("check: HTTP 500"))]
    );
    // A new reason while still failing: visible, so recorded, but not a health change.
    let still = Change::CheckResult {
        key: key("a"),
        healthy: false,
        reason: "timed out".into(),
    };
    assert_eq!(
        drafts_of(&mut model, still),
        [of(Event::Updated, Some("a"), Some("check: timed out"))]
    );
    let drain = Change::Drain {
        key: key("a"),
        draining: true,
    };
    assert_eq!(
        drafts_of(&mut model, drain),
        [of(Event::Drained, Some("a"), None)]
    );
    let remove = Change::Remove {
        key: key("a"),
        source: SourceId::api(),
    };
    assert_eq!(
        drafts_of(&mut model, remove),
        [
            of(Event::Deregistered, Some("a"), None),
            of(Event::ServiceDeleted, None, None)
        ]
    );
}

#[test]
fn heartbeats_and_reported_health_give_their_reasons() {
    let mut model = model();
    drafts_of(&mut model, upsert("a", 1));
    let expired = Change::HeartbeatExpired { key: key("a") };
    assert_eq!(
        drafts_of(&mut model, expired),
        [of(Event::Unhealthy, Some("a"), Some("heartbeat expired"))]
    );
    let renewed = Change::Heartbeat { key: key("a") };
    assert_eq!(
        drafts_of(&mut model, renewed),
        [of(Event::Healthy, Some("a"), Some("heartbeat received"))]
    );
    let down = Change::SetHealth {
        key: key("a"),
        healthy: false,
    };
    assert_eq!(
        drafts_of(&mut model, down),
        [of(
            Event::Unhealthy,
            Some("a"),
            Some("reported unhealthy (api)")
        )]
    );
}

#[test]
fn only_what_differs_is_recorded() {
    let mut model = model();
    drafts_of(&mut model, upsert("a", 1));
    drafts_of(&mut model, upsert("b", 2));
    // Touched but unchanged (an identical registration): nothing.
    assert_eq!(drafts_of(&mut model, upsert("a", 1)), []);
    let snapshot = model.snapshot.clone();
    let mut touched = Touched::default();
    let web = snapshot.service("internal", "web");
    touched.service("internal", &"web".into(), web);
    touched.namespaces.insert("internal".into());
    touched.resolve(&snapshot);
    let mut found = 0;
    drafts(&snapshot, &snapshot, &touched, &mut |_| found += 1);
    assert_eq!(found, 0);
}

#[test]
fn the_recorder_numbers_publishes_and_wakes_waiters() {
    let mut model = model();
    let initial = Arc::new(model.snapshot.clone());
    let feed = Arc::new(ChangeFeed::new(initial.revision));
    let mut recorder = Recorder::new(feed.clone(), initial);
    let mut woken = feed.subscribe();
    let mut touched = Touched::default();
    model
        .apply(upsert("a", 1), SystemTime::now(), &mut touched, None)
        .unwrap();
    model.snapshot.revision += 1;
    let published = Arc::new(model.snapshot.clone());
    touched.resolve(&published);
    recorder.record(&published, &touched);
    assert!(woken.has_changed().unwrap());
    let recent = feed.recent();
    let index = published.revision + 1;
    assert_eq!(recent.index(), index);
    assert_eq!(recent.service_index("internal", "web"), index);
    // The same snapshot again, its service named as unchanged: nothing new, nobody woken.
    woken.borrow_and_update();
    let mut unchanged = Touched::default();
    unchanged.service(
        "internal",
        &"web".into(),
        published.service("internal", "web"),
    );
    unchanged.resolve(&published);
    recorder.record(&published, &unchanged);
    assert!(!woken.has_changed().unwrap());
}

/// Instances are compared by pointer first: one changed and changed back within a
/// publish (a new but equal copy) is nothing to tell, and the others are not read.
#[test]
fn an_instance_changed_back_within_a_publish_is_not_recorded() {
    let mut model = model();
    for (id, octet) in [("a", 1), ("b", 2), ("c", 3)] {
        drafts_of(&mut model, upsert(id, octet));
    }
    let health = |id, healthy| Change::SetHealth {
        key: key(id),
        healthy,
    };
    assert_eq!(
        drafts_of_all(&mut model, [health("b", false), health("b", true)]),
        []
    );
    // Removed, added and changed together, in id order.
    let remove = Change::Remove {
        key: key("a"),
        source: SourceId::api(),
    };
    let found: Vec<_> = drafts_of_all(&mut model, [upsert("d", 4), remove, health("c", false)])
        .into_iter()
        .map(|(event, instance, _)| (event, instance.unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            (Event::Deregistered, "a".to_owned()),
            (Event::Unhealthy, "c".to_owned()),
            (Event::Registered, "d".to_owned()),
        ]
    );
}
