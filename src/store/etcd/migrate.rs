//! Moving between the local log and etcd: `muster etcd import` copies a data_dir's
//! API-owned state into an empty prefix, `muster etcd export` writes a prefix into an
//! empty data_dir.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::registry::Registry as MetricsRegistry;

use super::client::{Committed, Etcd, EtcdError, Expect, MAX_TXN_BYTES, MAX_TXN_WRITES, Op};
use super::metrics::EtcdMetrics;
use crate::config::{Config, ConfigError};
use crate::registry::{self, Change, Snapshot, SourceId};
use crate::store::{self, StoreError, Wal};

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("[etcd] is not in the configuration")]
    NoEtcd,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("{0}")]
    NotEmpty(String),
}

/// Copies the API-owned state of `config`'s data_dir into its etcd prefix, which must be
/// empty. Returns how many records were written.
pub async fn import(config: &Config) -> Result<usize, MigrateError> {
    let namespaces = config.settings()?.namespaces;
    let etcd_config = config.etcd.as_ref().ok_or(MigrateError::NoEtcd)?;
    let recovered = store::read_log::<Change>(&config.data_dir)?;
    let snapshot = registry::replay(Snapshot::new(namespaces, []), recovered);
    let records = registry::records(&snapshot, |owner| *owner == SourceId::api());
    let etcd = Etcd::connect(etcd_config, Arc::new(EtcdMetrics::default())).await?;
    let present = etcd.count().await?;
    if present > 0 {
        return Err(MigrateError::NotEmpty(format!(
            "the prefix {:?} holds {present} keys; import writes only into an empty one",
            etcd_config.prefix
        )));
    }
    // Parents before children (key order), each key expected absent: a replica that
    // starts writing meanwhile makes the import stop rather than mix.
    let mut written = 0;
    let mut chunk: Vec<Op> = Vec::new();
    let mut bytes = 0;
    let total = records.len();
    for (index, (key, record)) in records.into_iter().enumerate() {
        let op = Op::put(key, &record);
        bytes += op.value_len();
        chunk.push(op);
        let last = index + 1 == total;
        if chunk.len() == MAX_TXN_WRITES || bytes >= MAX_TXN_BYTES / 2 || last {
            let expects: Vec<Expect> = chunk
                .iter()
                .map(|op| Expect::ModRevision(op.key().clone(), 0))
                .collect();
            if !matches!(etcd.commit(&expects, &chunk).await?, Committed::Done(_)) {
                return Err(MigrateError::NotEmpty(format!(
                    "keys appeared under {:?} while importing; {written} records were written",
                    etcd_config.prefix
                )));
            }
            written += chunk.len();
            chunk.clear();
            bytes = 0;
        }
    }
    Ok(written)
}

/// Writes what `config`'s etcd prefix holds into its data_dir, which must hold no log.
/// Returns how many changes were logged.
pub async fn export(config: &Config) -> Result<usize, MigrateError> {
    let namespaces = config.settings()?.namespaces;
    let etcd_config = config.etcd.as_ref().ok_or(MigrateError::NoEtcd)?;
    let dir = &config.data_dir;
    let has_log = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".log")
        })
    });
    if has_log {
        return Err(MigrateError::NotEmpty(format!(
            "{} already holds a log; export writes only into an empty data_dir",
            dir.display()
        )));
    }
    let etcd = Etcd::connect(etcd_config, Arc::new(EtcdMetrics::default())).await?;
    let loaded = etcd.load().await?;
    let records = loaded
        .records
        .into_iter()
        .filter_map(|stored| Some((stored.key, stored.record?)));
    let (snapshot, skipped) = registry::from_records(Snapshot::new(namespaces, []), records);
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "records naming namespaces this configuration lacks were not exported"
        );
    }
    write_log(dir, &snapshot, loaded.revision)
}

/// Logs the changes that recreate `snapshot`'s API-owned state, at `revision`.
fn write_log(dir: &Path, snapshot: &Snapshot, revision: i64) -> Result<usize, MigrateError> {
    let (mut wal, _) = Wal::<Change>::open(dir, &mut MetricsRegistry::default())?;
    let changes = registry::durable_state(snapshot);
    let revision = u64::try_from(revision).unwrap_or(0);
    for (time, change) in &changes {
        let encoded = wal
            .encode(change)
            .map_err(|e| StoreError::Corrupt(format!("a record is too large to log: {e}")))?;
        wal.stage(*time, revision, encoded);
    }
    wal.stage_revision(SystemTime::now(), revision);
    wal.commit().map_err(|source| StoreError::Io {
        path: dir.to_owned(),
        source,
    })?;
    Ok(changes.len())
}
