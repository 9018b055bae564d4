use std::time::{Duration, Instant};

use super::*;
use crate::sources::ecs::config::EcsSourceConfig;
use crate::sources::ecs::mapping::{Out, place};
use crate::sources::ecs::parse::tests::port;
use crate::sources::ecs::parse::tests::{RUNNING, STOP_INTENT, STOPPED, facts};
use crate::sources::ecs::parse::{ContainerDefinition, NetworkMode, TaskDefinition};

fn definition() -> TaskDefinition {
    TaskDefinition {
        family: "api".into(),
        network_mode: NetworkMode::Awsvpc,
        containers: vec![ContainerDefinition {
            name: "api".into(),
            essential: true,
            ports: vec![port(8080)],
            health_check: true,
        }],
        tags: Default::default(),
    }
}

fn placement(facts: &TaskFacts) -> Placement {
    place(
        facts,
        &definition(),
        &EcsSourceConfig::new(vec!["prod".into()], "internal"),
        None,
        None,
    )
}

/// Applies an event the way the source's loop does; None when it was not fresh.
fn event(tasks: &mut Tasks, facts: &TaskFacts, now: Instant) -> Result<Vec<String>, Freshness> {
    match tasks.freshness(facts) {
        Freshness::Fresh => Ok(tasks
            .record(facts, placement(facts), now)
            .iter()
            .map(describe)
            .collect()),
        other => Err(other),
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::Upsert { key, source, .. } => format!("upsert {key} by {source}"),
        Change::Remove { key, source } => format!("remove {key} by {source}"),
        Change::Sync { source, instances } => {
            let keys: Vec<String> = instances.iter().map(|(k, _)| k.id.clone()).collect();
            format!("sync {source} [{}]", keys.join(","))
        }
        other => format!("{other:?}"),
    }
}

fn task(id: &str, version: Option<u64>) -> TaskFacts {
    let mut task = facts(RUNNING);
    task.task_arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/prod/{id}");
    task.version = version;
    task.updated_at = None;
    task
}

const KEY: &str = "internal/api/5f1c2b7e9a0d4c3b8e6f1a2b3c4d5e6f";

#[test]
fn the_fixture_lifecycle_enters_then_leaves_at_the_stop_intent() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    assert_eq!(
        event(&mut tasks, &facts(RUNNING), now),
        Ok(vec![format!("upsert {KEY} by ecs:prod")])
    );
    assert_eq!(tasks.placed("prod"), 1);
    assert_eq!(
        event(&mut tasks, &facts(STOP_INTENT), now),
        Ok(vec![format!("remove {KEY} by ecs:prod")])
    );
    assert_eq!(
        event(&mut tasks, &facts(STOPPED), now),
        Ok(vec![]),
        "already gone"
    );
    assert_eq!(tasks.placed("prod"), 0);
    assert_eq!(tasks.generation(), 3);
}

#[test]
fn duplicates_and_reordered_events_are_resolved_by_version() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    event(&mut tasks, &facts(RUNNING), now).unwrap();
    assert_eq!(
        event(&mut tasks, &facts(RUNNING), now),
        Err(Freshness::Duplicate)
    );
    // STOPPED (8) arrives before the stop intent (6): the intent is stale.
    assert_eq!(
        event(&mut tasks, &facts(STOPPED), now),
        Ok(vec![format!("remove {KEY} by ecs:prod")])
    );
    assert_eq!(
        event(&mut tasks, &facts(STOP_INTENT), now),
        Err(Freshness::Stale)
    );
    // A RUNNING event that was delayed, even with a higher version, cannot bring it back.
    let mut late = facts(RUNNING);
    late.version = Some(9);
    assert_eq!(event(&mut tasks, &late, now), Err(Freshness::Stale));
    // An unhealthy report with a lower version than the healthy one is stale too.
    let mut tasks = Tasks::default();
    let mut healthy = task("t1", Some(4));
    let mut unhealthy = task("t1", Some(3));
    unhealthy.health = Some("UNHEALTHY".into());
    event(&mut tasks, &healthy, now).unwrap();
    assert_eq!(event(&mut tasks, &unhealthy, now), Err(Freshness::Stale));
    unhealthy.version = Some(5);
    assert_eq!(
        event(&mut tasks, &unhealthy, now).unwrap().len(),
        1,
        "removed"
    );
    healthy.version = Some(6);
    assert_eq!(
        event(&mut tasks, &healthy, now).unwrap().len(),
        1,
        "back when healthy again"
    );
}

#[test]
fn without_versions_update_times_order_events() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    let mut first = task("t1", None);
    first.updated_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100));
    let mut older = first.clone();
    older.updated_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(99));
    older.health = Some("UNHEALTHY".into());
    event(&mut tasks, &first, now).unwrap();
    assert_eq!(event(&mut tasks, &older, now), Err(Freshness::Stale));
    assert_eq!(event(&mut tasks, &first, now), Err(Freshness::Duplicate));
    // Neither: the later arrival wins.
    let mut plain = task("t2", None);
    event(&mut tasks, &plain, now).unwrap();
    plain.health = Some("UNHEALTHY".into());
    assert_eq!(event(&mut tasks, &plain, now).unwrap().len(), 1);
}

#[test]
fn a_reconcile_syncs_its_cluster_and_counts_drift_after_the_first() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    let described = |ids: &[&str]| {
        ids.iter()
            .map(|id| (task(id, None), placement(&task(id, None))))
            .collect()
    };
    let (sync, drift) = tasks.reconcile("prod", described(&["a", "b"]), 0, now);
    assert_eq!(sorted(&sync), "a,b");
    assert_eq!(
        drift,
        Drift::default(),
        "the first reconcile is the initial load"
    );
    // "c" started and "a" stopped without any event reaching us.
    let (sync, drift) = tasks.reconcile("prod", described(&["b", "c"]), tasks.generation(), now);
    assert_eq!(sorted(&sync), "b,c");
    assert_eq!(
        drift,
        Drift {
            added: 1,
            removed: 1,
            changed: 0
        }
    );
    assert_eq!(drift.total(), 2);
    // Another cluster's reconcile leaves prod alone.
    let mut other = task("x", None);
    other.cluster = "dev".into();
    let (sync, _) = tasks.reconcile("dev", vec![(other.clone(), placement(&other))], 0, now);
    assert_eq!(describe(&sync), "sync ecs:dev [x]");
    assert_eq!(tasks.placed("prod"), 2);
}

fn sorted(sync: &Change) -> String {
    let Change::Sync { instances, .. } = sync else {
        panic!("not a sync")
    };
    let mut ids: Vec<&str> = instances.iter().map(|(k, _)| k.id.as_str()).collect();
    ids.sort();
    ids.join(",")
}

#[test]
fn events_newer_than_the_listing_win_over_it() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    tasks.reconcile("prod", vec![], 0, now);
    let since = tasks.generation();
    // While the reconcile was listing, "new" started and "old" was told to stop.
    event(&mut tasks, &task("new", None), now).unwrap();
    let mut old = task("old", None);
    let (_, _) = tasks.reconcile("prod", vec![(old.clone(), placement(&old))], 0, now);
    old.desired_status = "STOPPED".into();
    event(&mut tasks, &old, now).unwrap();
    let still_running = task("old", None);
    let (sync, drift) = tasks.reconcile(
        "prod",
        vec![(still_running.clone(), placement(&still_running))],
        since,
        now,
    );
    assert_eq!(
        sorted(&sync),
        "new",
        "the new task stays and the stopping one stays out"
    );
    assert_eq!(drift, Drift::default());
}

#[test]
fn a_stop_intent_sticks_while_the_api_still_says_running() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    let running = facts(RUNNING);
    tasks.reconcile("prod", vec![(running.clone(), placement(&running))], 0, now);
    event(&mut tasks, &facts(STOP_INTENT), now).unwrap();
    let mut described = running.clone();
    described.version = None;
    let later = tasks.generation();
    let (sync, drift) = tasks.reconcile(
        "prod",
        vec![(described.clone(), placement(&described))],
        later,
        now,
    );
    assert_eq!(sorted(&sync), "");
    assert_eq!(drift, Drift::default());
}

#[test]
fn described_states_older_than_an_event_are_ignored() {
    let mut tasks = Tasks::default();
    let now = Instant::now();
    tasks.reconcile("prod", vec![], 0, now);
    let mut unhealthy = task("t", Some(7));
    unhealthy.health = Some("UNHEALTHY".into());
    event(&mut tasks, &unhealthy, now).unwrap();
    let stale = task("t", Some(6));
    let (sync, drift) = tasks.reconcile(
        "prod",
        vec![(stale.clone(), placement(&stale))],
        tasks.generation(),
        now,
    );
    assert_eq!(sorted(&sync), "");
    assert_eq!(drift, Drift::default());
    assert_eq!(placement(&unhealthy), Placement::Out(Out::Unhealthy));
}

#[test]
fn tombstones_expire() {
    let mut tasks = Tasks::default();
    let start = Instant::now();
    event(&mut tasks, &facts(STOPPED), start).unwrap();
    tasks.reconcile(
        "prod",
        vec![],
        tasks.generation(),
        start + Duration::from_secs(1),
    );
    assert_eq!(
        event(&mut tasks, &facts(RUNNING), start),
        Err(Freshness::Stale)
    );
    tasks.reconcile(
        "prod",
        vec![],
        tasks.generation(),
        start + TOMBSTONE_TTL + Duration::from_secs(1),
    );
    assert_eq!(
        tasks.freshness(&facts(RUNNING)),
        Freshness::Fresh,
        "forgotten"
    );
}

/// The contract every source keeps, on the syncs this state machine makes from
/// described tasks (the AWS calls around it are the interop suite's, against moto).
#[tokio::test]
async fn the_source_contract_holds() {
    use crate::sources::contract_tests;
    let source = source_id("prod");
    let (registry, stop) = contract_tests::registry(&source);
    let mut tasks = Tasks::default();
    contract_tests::check(&registry, &source, "api", async |ids: &[&str]| {
        let described = ids
            .iter()
            .map(|id| (task(id, None), placement(&task(id, None))))
            .collect();
        let since = tasks.generation();
        let (sync, _) = tasks.reconcile("prod", described, since, Instant::now());
        registry.apply(sync).await.unwrap();
    })
    .await;
    stop.cancel();
}
