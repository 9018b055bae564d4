use std::time::{Duration, SystemTime};

use super::*;
use crate::registry::{Change, InstanceKey, InstanceSpec, SourceId};
use crate::store::MAX_ITEM;

fn change(id: u32) -> Change {
    Change::Upsert {
        key: InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: format!("i-{id}"),
        },
        spec: InstanceSpec {
            ipv4: Some([10, 0, 0, 1].into()),
            healthy: true,
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    }
}

type Log = Wal<Change>;

fn ids(recovered: &Recovered<Change>) -> Vec<String> {
    recovered
        .changes
        .iter()
        .map(|(_, change)| match change {
            Change::Upsert { key, .. } => key.id.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn open(dir: &Path) -> (Log, Recovered<Change>) {
    Wal::open(dir, &mut Registry::default()).unwrap()
}

/// Writes `count` changes from `first`, one commit each.
fn write(wal: &mut Log, first: u32, count: u32) {
    for id in first..first + count {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::from(id));
        let encoded = wal.encode(&change(id)).unwrap();
        wal.stage(time, u64::from(id), encoded);
        wal.commit().unwrap();
    }
}

fn newest_segment(dir: &Path) -> PathBuf {
    files::numbered(dir, "wal").unwrap().pop().unwrap().1
}

#[test]
fn committed_changes_come_back_in_order_with_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = open(dir.path());
    assert!(recovered.changes.is_empty());
    write(&mut wal, 0, 3);
    drop(wal);
    let (mut wal, recovered) = open(dir.path());
    assert_eq!(ids(&recovered), ["i-0", "i-1", "i-2"]);
    assert_eq!(
        recovered.changes[2].0,
        SystemTime::UNIX_EPOCH + Duration::from_millis(2)
    );
    write(&mut wal, 3, 1);
    drop(wal);
    assert_eq!(
        ids(&open(dir.path()).1),
        ["i-0", "i-1", "i-2", "i-3"],
        "across segments"
    );
}

#[test]
fn a_torn_tail_is_cut_and_earlier_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path());
    write(&mut wal, 0, 3);
    drop(wal);
    let segment = newest_segment(dir.path());
    let length = fs::metadata(&segment).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(length - 5)
        .unwrap();
    let (mut wal, recovered) = open(dir.path());
    assert_eq!(ids(&recovered), ["i-0", "i-1"]);
    assert!(recovered.truncated_bytes > 0);
    write(&mut wal, 10, 1);
    drop(wal);
    let recovered = open(dir.path()).1;
    assert_eq!(
        ids(&recovered),
        ["i-0", "i-1", "i-10"],
        "the cut segment is clean now"
    );
    assert_eq!(recovered.truncated_bytes, 0);
}

#[test]
fn flipped_bytes_in_the_tail_fail_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path());
    write(&mut wal, 0, 3);
    drop(wal);
    let segment = newest_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    assert_eq!(ids(&open(dir.path()).1), ["i-0", "i-1"]);
}

#[test]
fn corruption_before_the_tail_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path());
    write(&mut wal, 0, 2);
    drop(wal);
    let damaged = newest_segment(dir.path());
    let (mut wal, _) = open(dir.path());
    write(&mut wal, 2, 2);
    drop(wal);
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[12] ^= 0xff;
    fs::write(&damaged, bytes).unwrap();
    let error = Log::open(dir.path(), &mut Registry::default())
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
}

#[test]
fn a_second_muster_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = open(dir.path());
    let error = Log::open(dir.path(), &mut Registry::default())
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Locked(_)), "{error}");
}

#[test]
fn compaction_replaces_old_segments_with_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path());
    wal.set_segment_limit(1);
    write(&mut wal, 0, 2);
    let state = vec![
        (SystemTime::UNIX_EPOCH, change(100)),
        (SystemTime::UNIX_EPOCH, change(101)),
    ];
    wal.maybe_compact(200, move || state);
    wal.finish_compaction();
    write(&mut wal, 2, 1);
    drop(wal);
    let snapshots = files::numbered(dir.path(), "snapshot").unwrap();
    let segments = files::numbered(dir.path(), "wal").unwrap();
    assert_eq!(snapshots.len(), 1);
    assert!(
        segments.iter().all(|(n, _)| *n >= snapshots[0].0),
        "older segments deleted"
    );
    let recovered = open(dir.path()).1;
    assert_eq!(ids(&recovered), ["i-100", "i-101", "i-2"]);
    assert_eq!(recovered.next_revision, 200 + REVISION_STRIDE);
}

#[test]
fn the_revision_never_goes_back_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = open(dir.path());
    assert_eq!(recovered.next_revision, REVISION_STRIDE);
    // Changes that are not logged move the revision; a marker is written per stride.
    wal.stage_revision(SystemTime::UNIX_EPOCH, REVISION_STRIDE + 10);
    wal.stage_revision(SystemTime::UNIX_EPOCH, REVISION_STRIDE + 500);
    wal.commit().unwrap();
    drop(wal);
    // Anything published before the restart was below the marker plus one stride.
    let recovered = open(dir.path()).1;
    assert_eq!(recovered.next_revision, 2 * REVISION_STRIDE + 10);
    assert!(recovered.changes.is_empty());
}

#[test]
fn an_interrupted_snapshot_is_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join("snapshot-0000000005.tmp");
    fs::write(&leftover, b"half a snapshot").unwrap();
    let (_wal, recovered) = open(dir.path());
    assert!(recovered.changes.is_empty());
    assert!(!leftover.exists());
}

fn huge_change() -> Change {
    Change::Tag {
        target: crate::registry::Tagged::Namespace("internal".into()),
        set: [("k".to_owned(), "v".repeat(MAX_ITEM))].into(),
        remove: Vec::new(),
    }
}

#[test]
fn an_item_the_reader_would_refuse_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path());
    let error = wal.encode(&huge_change()).err().unwrap();
    assert!(error.0 > MAX_ITEM, "{error}");
}

#[test]
fn a_snapshot_that_cannot_be_written_keeps_the_segments_it_would_replace() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path());
    wal.set_segment_limit(1);
    write(&mut wal, 0, 2);
    wal.maybe_compact(200, || vec![(SystemTime::UNIX_EPOCH, huge_change())]);
    wal.finish_compaction();
    write(&mut wal, 2, 1);
    drop(wal);
    assert!(files::numbered(dir.path(), "snapshot").unwrap().is_empty());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "no .tmp left behind");
    assert_eq!(ids(&open(dir.path()).1), ["i-0", "i-1", "i-2"]);
}
