use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::registry::RegistryHandle;
use crate::sources::contract_tests::{self, owned};

/// Writes the file as an editor does (a new file renamed over the old one).
fn write(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn instances(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            format!(
                "[[instances]]\nnamespace = \"internal\"\nservice = \"web\"\nid = \"{id}\"\nipv4 = \"10.0.0.1\"\n"
            )
        })
        .collect()
}

/// Waits until the registry publishes a revision after `before`.
async fn next_revision(registry: &RegistryHandle, before: u64) {
    for _ in 0..500 {
        if registry.snapshot().revision > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the file source applied nothing within 5 s");
}

/// The contract every source keeps, on a real file: missing at start (not ready), then
/// written, edited and emptied. Broken, it keeps the last good state; it stops at
/// shutdown.
#[tokio::test]
async fn the_source_contract_holds() {
    let folder = tempfile::tempdir().unwrap();
    let config = FileSourceConfig {
        path: folder.path().join("instances.toml"),
    };
    let source = source_id(&config);
    let (registry, stop) = contract_tests::registry(&source);
    let (_reloads, reload) = tokio::sync::watch::channel(Arc::new(Config::default()));
    let statuses = crate::sources::SourceStatuses::default();
    let context = SourceContext {
        registry: registry.clone(),
        shutdown: stop.clone(),
        reload,
        statuses: statuses.clone(),
    };
    let running = tokio::spawn(run(config.clone(), context));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = statuses.register(source.clone());
    let missing = status.state();
    assert!(!missing.synced() && missing.failing(), "{missing:?}");
    contract_tests::check(&registry, &source, "web", async |ids: &[&str]| {
        let before = registry.snapshot().revision;
        write(&config.path, &instances(ids));
        next_revision(&registry, before).await;
    })
    .await;

    let before = registry.snapshot().revision;
    write(&config.path, &instances(&["d"]));
    next_revision(&registry, before).await;
    let before = registry.snapshot().revision;
    write(&config.path, "[[instances]]\nnamespace = ");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        owned(&registry, "web", &source),
        ["d"],
        "a broken file lost the state"
    );
    assert_eq!(registry.snapshot().revision, before);
    let broken = status.state();
    assert!(broken.synced() && broken.failing(), "{broken:?}");
    let error = broken.last_error.unwrap().1;
    assert!(error.starts_with("not applied: "), "{error}");
    assert!(!error.contains('\n'), "{error}");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), running)
        .await
        .expect("the source did not stop at shutdown")
        .unwrap();
}
