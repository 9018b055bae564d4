use std::time::SystemTime;

use super::*;

fn instance(event: Event, service: &str, id: &str) -> ChangeEntry {
    ChangeEntry {
        index: 0,
        time: SystemTime::UNIX_EPOCH,
        event,
        namespace: "internal".into(),
        service: Some(service.into()),
        instance: Some(id.into()),
        source: Some(SourceId::api()),
        reason: None,
    }
}

fn indexes(recent: &RecentChanges, after: u64) -> Vec<u64> {
    recent.since(after).unwrap().map(|e| e.index).collect()
}

#[test]
fn an_index_follows_the_revision_and_grows_by_one_at_least() {
    let mut recent = RecentChanges::new(7);
    assert_eq!(recent.index(), 7);
    recent.append(
        vec![instance(Event::Registered, "web", "a")],
        8,
        SystemTime::now(),
    );
    assert_eq!(recent.index(), 8);
    // One revision, three entries (a sync): three indexes.
    let three = ["b", "c", "d"].map(|id| instance(Event::Registered, "web", id));
    recent.append(three.to_vec(), 9, SystemTime::now());
    assert_eq!(indexes(&recent, 8), [9, 10, 11]);
    // The revision catches up (etcd's jumps ahead): the index follows it.
    recent.append(
        vec![instance(Event::Healthy, "web", "a")],
        11,
        SystemTime::now(),
    );
    recent.append(
        vec![instance(Event::Healthy, "web", "b")],
        40,
        SystemTime::now(),
    );
    assert_eq!(indexes(&recent, 11), [12, 40]);
    assert_eq!(indexes(&recent, 40), Vec::<u64>::new());
}

#[test]
fn each_service_has_the_index_of_its_last_change() {
    let mut recent = RecentChanges::new(5);
    assert_eq!(recent.service_index("internal", "web"), 5);
    recent.append(
        vec![instance(Event::Registered, "web", "a")],
        6,
        SystemTime::now(),
    );
    recent.append(
        vec![instance(Event::Registered, "db", "a")],
        7,
        SystemTime::now(),
    );
    assert_eq!(recent.service_index("internal", "web"), 6);
    assert_eq!(recent.service_index("internal", "db"), 7);
    assert_eq!(recent.service_index("other", "web"), 5);
    // A deleted service keeps an index at least that of its deletion.
    let deleted = ChangeEntry {
        instance: None,
        source: None,
        ..instance(Event::ServiceDeleted, "db", "")
    };
    recent.append(vec![deleted], 8, SystemTime::now());
    assert_eq!(recent.service_index("internal", "db"), 8);
    assert_eq!(recent.service_index("internal", "web"), 6);
    // So does every service of a deleted namespace.
    let gone = ChangeEntry {
        service: None,
        instance: None,
        source: None,
        ..instance(Event::NamespaceDeleted, "", "")
    };
    recent.append(vec![gone], 9, SystemTime::now());
    assert_eq!(recent.service_index("internal", "web"), 9);
}

#[test]
fn the_ring_keeps_the_last_entries_and_says_when_a_resume_missed_some() {
    let mut recent = RecentChanges::new(0);
    let total = RECENT_CHANGES as u64 + 10;
    for revision in 1..=total {
        recent.append(
            vec![instance(Event::Healthy, "web", "a")],
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
    let draft = ChangeEntry {
        reason: Some("heartbeat expired".into()),
        ..instance(Event::Unhealthy, "web", "i-1")
    };
    recent.append(vec![draft], 3, SystemTime::UNIX_EPOCH);
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
    let feed = ChangeFeed::new(1);
    let mut woken = feed.subscribe();
    let mut recent = (*feed.recent()).clone();
    feed.publish(recent.clone());
    assert!(!woken.has_changed().unwrap());
    recent.append(
        vec![instance(Event::Registered, "web", "a")],
        2,
        SystemTime::now(),
    );
    feed.publish(recent);
    woken.changed().await.unwrap();
    assert_eq!(*woken.borrow_and_update(), 2);
    assert_eq!(feed.recent().index(), 2);
}
