//! The writer's order, which the rest of muster relies on: a change is logged before
//! the hooks see it, the hooks run before readers see it, readers see it before its
//! writer is answered; and a log that cannot be written refuses API writes (undoing
//! them) while sources' changes go on.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::registry::{InstanceKey, InstanceSpec, SourceId};

fn upsert(id: &str, source: SourceId) -> Change {
    Change::Upsert {
        key: InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: id.into(),
        },
        spec: InstanceSpec {
            ipv4: Some([10, 0, 0, 1].into()),
            healthy: true,
            ..InstanceSpec::default()
        },
        source,
    }
}

/// A registry on a log in `dir`, with the default configuration.
fn durable(dir: &Path, wal: impl FnOnce(&mut ChangeLog)) -> Registry {
    let config = Config::default();
    let settings = config.settings().unwrap();
    let (mut log, recovered) = ChangeLog::open(dir, &mut Default::default()).unwrap();
    wal(&mut log);
    let initial = Snapshot::new(settings.namespaces.clone(), []);
    Registry::durable(initial, log, recovered, config.admission(&settings))
}

/// Whether a log segment in `dir` holds instance `id`.
fn logged(dir: &Path, id: &str) -> bool {
    let needle = format!("\"{id}\"");
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).contains(&needle)
    })
}

fn served(handle: &RegistryHandle, id: &str) -> bool {
    let snapshot = handle.snapshot();
    let service = snapshot.service("internal", "web");
    service.is_some_and(|s| s.instances.values().any(|i| i.id == id))
}

/// What a publish hook saw: the revision it was given, the revision readers saw, and
/// whether the log held the instance already.
#[derive(Debug)]
struct Seen {
    revision: u64,
    readers_at: u64,
    logged: bool,
}

#[tokio::test]
async fn a_change_is_logged_then_hooked_then_published_then_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = durable(dir.path(), |_| {});
    let handle = registry.handle();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (record, readers, path) = (seen.clone(), handle.clone(), dir.path().to_owned());
    registry.on_publish(Box::new(move |snapshot, _| {
        record.lock().unwrap().push(Seen {
            revision: snapshot.revision,
            readers_at: readers.snapshot().revision,
            logged: logged(&path, "i-1"),
        });
    }));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(registry.run(stop.clone()));

    let applied = handle
        .apply_durable(upsert("i-1", SourceId::api()))
        .await
        .unwrap();
    // Acknowledged: on disk, served, and the hooks ran for it first.
    assert!(logged(dir.path(), "i-1"));
    assert!(served(&handle, "i-1"));
    let hooked = {
        let seen = seen.lock().unwrap();
        let at = |s: &&Seen| s.revision == applied.revision;
        let hooked = seen.iter().find(at).map(|s| (s.readers_at, s.logged));
        hooked.unwrap_or_else(|| panic!("no hook ran for revision {}: {seen:?}", applied.revision))
    };
    let (readers_at, was_logged) = hooked;
    assert!(was_logged, "the hook ran before the change was logged");
    assert!(
        readers_at < applied.revision,
        "readers saw revision {readers_at} before the hooks ran"
    );
    stop.cancel();
    writer.await.unwrap();
}

#[tokio::test]
async fn a_log_that_cannot_be_written_refuses_api_writes_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let registry = durable(dir.path(), ChangeLog::break_segment);
    let handle = registry.handle();
    let stop = CancellationToken::new();
    let writer = tokio::spawn(registry.run(stop.clone()));

    // The write fails: the change is undone, refused, and API writes stop.
    let refused = handle.apply_durable(upsert("i-1", SourceId::api())).await;
    assert!(
        matches!(refused, Err(ChangeError::Storage(_))),
        "{refused:?}"
    );
    assert!(!served(&handle, "i-1"), "a refused change is served");
    assert!(handle.read_only().is_some());
    let refused = handle.apply_durable(upsert("i-2", SourceId::api())).await;
    assert!(
        matches!(refused, Err(ChangeError::Storage(_))),
        "{refused:?}"
    );
    assert!(!served(&handle, "i-2"));

    // A source's change needs no log: it goes on.
    let source = SourceId::new("file:static.toml");
    handle.apply(upsert("s-1", source)).await.unwrap();
    assert!(served(&handle, "s-1"));

    // Once the retry is due, a new segment takes writes again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    handle
        .apply_durable(upsert("i-3", SourceId::api()))
        .await
        .unwrap();
    assert!(handle.read_only().is_none());
    assert!(served(&handle, "i-3") && logged(dir.path(), "i-3"));
    assert!(
        !logged(dir.path(), "i-1"),
        "a refused change was left in the log"
    );
    stop.cancel();
    writer.await.unwrap();
}
