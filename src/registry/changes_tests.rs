use std::time::SystemTime;

use super::*;
use crate::registry::model::{self, Instance, InstanceSpec};

fn registered(id: &str) -> Instance {
    model::registered(id, InstanceSpec::default())
}

/// A draft of `event` on the instance `of` in `service`.
fn instance<'a>(event: Event, service: &'a str, of: &'a Instance) -> Draft<'a> {
    Draft {
        event,
        namespace: "internal",
        service: Some(service),
        instance: Some(of),
        was: None,
    }
}

/// Appends `drafts`, the changes of the snapshot at `revision`.
fn append<'a>(recent: &mut RecentChanges, drafts: Vec<Draft<'a>>, revision: u64, time: SystemTime) {
    recent.append(revision, time, |found| drafts.into_iter().for_each(found));
}

fn indexes(recent: &RecentChanges, after: u64) -> Vec<u64> {
    recent.since(after).unwrap().map(|e| e.index).collect()
}

#[test]
fn an_index_follows_the_revision_and_grows_by_one_at_least() {
    let [a, b, c, d] = ["a", "b", "c", "d"].map(registered);
    let mut recent = RecentChanges::new(7);
    assert_eq!(recent.index(), 7);
    append(
        &mut recent,
        vec![instance(Event::Registered, "web", &a)],
        8,
        SystemTime::now(),
    );
    assert_eq!(recent.index(), 8);
    // One revision, three entries (a sync): three indexes.
    let three = [&b, &c, &d].map(|of| instance(Event::Registered, "web", of));
    append(&mut recent, three.to_vec(), 9, SystemTime::now());
    assert_eq!(indexes(&recent, 8), [9, 10, 11]);
    // The revision catches up (etcd's jumps ahead): the index follows it.
    append(
        &mut recent,
        vec![instance(Event::Healthy, "web", &a)],
        11,
        SystemTime::now(),
    );
    append(
        &mut recent,
        vec![instance(Event::Healthy, "web", &b)],
        40,
        SystemTime::now(),
    );
    assert_eq!(indexes(&recent, 11), [12, 40]);
    assert_eq!(indexes(&recent, 40), Vec::<u64>::new());
}

#[test]
fn each_service_has_the_index_of_its_last_change() {
    let a = registered("a");
    let mut recent = RecentChanges::new(5);
    assert_eq!(recent.service_index("internal", "web"), 5);
    append(
        &mut recent,
        vec![instance(Event::Registered, "web", &a)],
        6,
        SystemTime::now(),
    );
    append(
        &mut recent,
        vec![instance(Event::Registered, "db", &a)],
        7,
        SystemTime::now(),
    );
    assert_eq!(recent.service_index("internal", "web"), 6);
    assert_eq!(recent.service_index("internal", "db"), 7);
    assert_eq!(recent.service_index("other", "web"), 5);
    // A deleted service keeps an index at least that of its deletion.
    let deleted = Draft {
        instance: None,
        ..instance(Event::ServiceDeleted, "db", &a)
    };
    append(&mut recent, vec![deleted], 8, SystemTime::now());
    assert_eq!(recent.service_index("internal", "db"), 8);
    assert_eq!(recent.service_index("internal", "web"), 6);
    // So does every service of a deleted namespace.
    let gone = Draft {
        service: None,
        instance: None,
        ..instance(Event::NamespaceDeleted, "", &a)
    };
    append(&mut recent, vec![gone], 9, SystemTime::now());
    assert_eq!(recent.service_index("internal", "web"), 9);
}

#[test]
fn the_ring_keeps_the_last_entries_and_says_when_a_resume_missed_some() {
    let a = registered("a");
    let mut recent = RecentChanges::new(0);
    let total = RECENT_CHANGES as u64 + 10;
    for revision in 1..=total {
        append(
            &mut recent,
            vec![instance(Event::Healthy, "web", &a)],
            revision,
            SystemTime::now(),
        );
    }
    assert_eq!(recent.entries().count(), RECENT_CHANGES);
    assert_eq!(recent.entries().next().unwrap().index, 11);
    assert_eq!(recent.entries().next_back().unwrap().index, total);
    // Resuming after 10 loses nothing; after 9, entry 10 is gone.
    assert_eq!(recent.since(10).unwrap().count(), RECENT_CHANGES);
    let missed = Missed {
        oldest: 10,
        last: total,
    };
    assert_eq!(recent.since(9).err(), Some(missed));
    // An index above the latest is another process's: start over.
    assert_eq!(recent.since(total + 1).err(), Some(missed));
}

#[test]
fn entries_serialize_with_rfc3339_times_and_snake_case_events() {
    let mut recent = RecentChanges::new(0);
    let was = registered("i-1");
    let expired = Instance {
        heartbeat_ok: false,
        ..registered("i-1")
    };
    let draft = Draft {
        was: Some(&was),
        ..instance(Event::Unhealthy, "web", &expired)
    };
    append(&mut recent, vec![draft], 3, SystemTime::UNIX_EPOCH);
    let entry = recent.entries().next().unwrap();
    let json = serde_json::to_value(&**entry).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "index": 3,
            "time": "1970-01-01T00:00:00.000Z",
            "event": "unhealthy",
            "namespace": "internal",
            "service": "web",
            "instance": "i-1",
            "source": "api",
            "reason": "heartbeat expired",
        })
    );
    assert_eq!(entry.event.as_str(), "unhealthy");
}

#[tokio::test]
async fn a_publish_with_changes_wakes_subscribers_and_one_without_does_not() {
    let a = registered("a");
    let feed = ChangeFeed::new(1);
    let mut woken = feed.subscribe();
    let mut recent = (*feed.recent()).clone();
    feed.publish(recent.clone());
    assert!(!woken.has_changed().unwrap());
    append(
        &mut recent,
        vec![instance(Event::Registered, "web", &a)],
        2,
        SystemTime::now(),
    );
    feed.publish(recent);
    woken.changed().await.unwrap();
    assert_eq!(*woken.borrow_and_update(), 2);
    assert_eq!(feed.recent().index(), 2);
}

#[test]
fn a_sync_larger_than_the_ring_keeps_its_last_changes_and_every_services_index() {
    let instances: Vec<Instance> = (0..RECENT_CHANGES * 3)
        .map(|i| registered(&format!("i-{i}")))
        .collect();
    let mut recent = RecentChanges::new(0);
    append(
        &mut recent,
        vec![instance(Event::Registered, "old", &instances[0])],
        1,
        SystemTime::now(),
    );
    // One sync: the first half in `db`, the rest in `web`.
    let half = instances.len() / 2;
    let drafts = instances
        .iter()
        .enumerate()
        .map(|(i, of)| instance(Event::Registered, if i < half { "db" } else { "web" }, of))
        .collect();
    append(&mut recent, drafts, 2, SystemTime::now());
    let last = 1 + instances.len() as u64;
    assert_eq!(recent.index(), last);
    assert_eq!(recent.entries().count(), RECENT_CHANGES);
    let held: Vec<_> = recent
        .entries()
        .map(|e| e.instance.clone().unwrap())
        .collect();
    let expected: Vec<_> = instances[instances.len() - RECENT_CHANGES..]
        .iter()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(held, expected);
    assert_eq!(
        recent.entries().next().unwrap().index,
        last - RECENT_CHANGES as u64 + 1
    );
    // Resuming before the oldest held is a miss; from just before it, every change.
    let oldest = last - RECENT_CHANGES as u64;
    assert_eq!(recent.since(oldest).unwrap().count(), RECENT_CHANGES);
    assert!(recent.since(oldest - 1).is_err());
    assert_eq!(recent.service_index("internal", "old"), 1);
    assert_eq!(recent.service_index("internal", "db"), 1 + half as u64);
    assert_eq!(recent.service_index("internal", "web"), last);
}

#[test]
fn a_copy_taken_before_a_change_tells_the_services_new_index() {
    let a = registered("a");
    let mut recent = RecentChanges::new(1);
    let copy = recent.clone();
    append(
        &mut recent,
        vec![instance(Event::Registered, "web", &a)],
        2,
        SystemTime::now(),
    );
    // The entries are the copy's own; the index table is shared and live.
    assert_eq!(copy.index(), 1);
    assert_eq!(copy.service_index("internal", "web"), 2);
    assert_eq!(copy.service_index("internal", "db"), 1);
}
