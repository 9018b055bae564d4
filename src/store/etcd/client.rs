//! Connecting to etcd, reading the prefix at one revision, and committing transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse,
};

use super::keys::{self, Layout};
use super::metrics::EtcdMetrics;
use crate::config::EtcdConfig;
use crate::registry::{Record, RecordKey};

/// Operations per transaction, and compares per transaction: etcd's `--max-txn-ops`
/// default, which a cluster may raise but not one muster can count on.
pub const MAX_TXN_OPS: usize = 128;
/// Writes a transaction may be given: [`Etcd::commit`] adds one (the serial marker),
/// and etcd counts it against `--max-txn-ops`.
pub const MAX_TXN_WRITES: usize = MAX_TXN_OPS - 1;
/// Bytes of values per transaction: well under etcd's 1.5 MiB `--max-request-bytes`,
/// leaving room for keys and compares.
pub const MAX_TXN_BYTES: usize = 1 << 20;
/// Keys read per request when loading the prefix (all at one revision).
const PAGE: i64 = 1000;
/// The largest response muster accepts from etcd: a page of records, or a watch response
/// carrying up to a thousand revisions of changes while catching up.
pub(super) const MAX_MESSAGE: usize = 256 << 20;

/// Why etcd could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Unavailable(String),
    #[error("etcd: timed out after {0:?}")]
    Timeout(Duration),
    #[error("etcd: {0}")]
    Config(String),
}

impl From<etcd_client::Error> for EtcdError {
    fn from(error: etcd_client::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// What a transaction expects of etcd's state, checked atomically with its writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key was last modified at this revision (0: it does not exist).
    ModRevision(RecordKey, i64),
    /// The key exists and is the incarnation created at this revision.
    Created(RecordKey, i64),
    /// No key exists below this namespace's or service's key.
    NoChildren(RecordKey),
    /// An election's winning key (a full etcd key) still exists, created at this
    /// revision: the writer still leads ([`super::Fence`]).
    Leads { key: Arc<[u8]>, revision: i64 },
}

/// One write of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put(RecordKey, Arc<[u8]>),
    Delete(RecordKey),
}

impl Op {
    pub fn key(&self) -> &RecordKey {
        match self {
            Op::Put(key, _) | Op::Delete(key) => key,
        }
    }

    pub fn put(key: RecordKey, record: &Record) -> Self {
        Op::Put(key, keys::encode_value(record).into())
    }

    /// Bytes it adds to a request (the value; keys are small).
    pub fn value_len(&self) -> usize {
        match self {
            Op::Put(_, value) => value.len(),
            Op::Delete(_) => 0,
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Its writes are etcd's state as of this revision.
    Done(i64),
    /// A compare failed; nothing was written. `revision` is etcd's at that moment: the
    /// state to validate again against is the one applied up to it.
    Conflict(i64),
    /// Nothing was written because these [`Expect::Leads`] keys no longer lead: the
    /// writes of their leaders must not be tried again.
    Deposed(i64, Vec<Arc<[u8]>>),
}

/// A record as etcd holds it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub key: RecordKey,
    /// `None` when the key was deleted.
    pub record: Option<Record>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The prefix at one revision.
#[derive(Debug, Default)]
pub struct Loaded {
    pub revision: i64,
    /// The revision of the last change to the records (the serial to serve): the newest
    /// `mod_revision` in the range, the serial marker's included.
    pub serial: i64,
    pub records: Vec<Stored>,
    /// Keys under the prefix that are not muster's layout or do not decode.
    pub undecodable: usize,
}

/// A connected client for one prefix.
#[derive(Clone)]
pub struct Etcd {
    pub(super) client: Client,
    kv: KvClient,
    pub(super) layout: Layout,
    pub(super) request_timeout: Duration,
    pub(super) metrics: Arc<EtcdMetrics>,
}

impl Etcd {
    /// Connects (lazily: without credentials nothing is sent before the first request).
    pub async fn connect(
        config: &EtcdConfig,
        metrics: Arc<EtcdMetrics>,
    ) -> Result<Self, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_keep_alive(Duration::from_secs(2), config.dial_timeout)
            // A member cut off from the leader refuses (and ends watches) instead of
            // serving a state that no longer moves.
            .with_require_leader(true);
        if let Some(user) = &config.username {
            let password = config
                .password(|name| std::env::var(name).ok())
                .map_err(|e| EtcdError::Config(format!("etcd.password_file: {e}")))?
                .ok_or_else(|| {
                    EtcdError::Config(
                        "etcd.username needs etcd.password_file or MUSTER_ETCD_PASSWORD".into(),
                    )
                })?;
            options = options.with_user(user, password);
        }
        if let Some(ca) = &config.ca_file {
            options = options.with_tls(tls(config, ca)?);
        }
        let client = Client::connect(&config.endpoints, Some(options)).await?;
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        Ok(Self {
            client,
            kv,
            layout: Layout::new(&config.prefix),
            request_timeout: config.request_timeout,
            metrics,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Reads every record under the prefix at one revision, a page at a time.
    pub async fn load(&self) -> Result<Loaded, EtcdError> {
        let started = Instant::now();
        let root = self.layout.root();
        let end = keys::prefix_end(&root);
        let mut loaded = Loaded::default();
        let mut from = root;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if loaded.revision > 0 {
                options = options.with_revision(loaded.revision);
            }
            let mut kv = self.kv.clone();
            let response = self
                .timed("range", kv.get(from.clone(), Some(options)))
                .await?;
            if loaded.revision == 0 {
                loaded.revision = response.header().map_or(0, |h| h.revision());
            }
            let mut last = None;
            let marker = self.layout.serial_marker();
            for kv in response.kvs() {
                last = Some(kv.key().to_vec());
                loaded.serial = loaded.serial.max(kv.mod_revision());
                if kv.key() == marker.as_slice() {
                    continue;
                }
                match self.decode(kv.key(), Some(kv.value())) {
                    Ok((key, record)) => loaded.records.push(Stored {
                        key,
                        record,
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                    }),
                    Err(error) => {
                        loaded.undecodable += 1;
                        tracing::debug!(%error, "skipped an etcd key");
                    }
                }
            }
            match last {
                Some(mut key) if response.more() => {
                    key.push(0);
                    from = key;
                }
                _ => break,
            }
        }
        self.metrics
            .load_seconds
            .set(started.elapsed().as_secs_f64());
        Ok(loaded)
    }

    /// Decodes a key and (when it was not deleted) its value.
    pub(super) fn decode(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(RecordKey, Option<Record>), keys::CodecError> {
        let decoded = self.layout.decode_key(key)?;
        let record = match value {
            Some(value) => Some(keys::decode_value(&decoded, value).map_err(|error| {
                keys::CodecError::Value {
                    key: String::from_utf8_lossy(key).into_owned(),
                    error,
                }
            })?),
            None => None,
        };
        Ok((decoded, record))
    }

    /// Commits `ops` if every expectation holds, within the request timeout.
    ///
    /// Either way the transaction writes the serial marker, so its revision comes back to
    /// every watch as an event: a writer waits for that event, committed or not, and never
    /// for a progress notification, which etcd before 3.4.24 and 3.5.8 may send ahead of
    /// the events a watch still owes (etcd-io/etcd#15220).
    pub async fn commit(&self, expects: &[Expect], ops: &[Op]) -> Result<Committed, EtcdError> {
        let compares: Vec<Compare> = expects.iter().map(|e| self.compare(e)).collect();
        let mut writes: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put(key, value) => TxnOp::put(self.layout.key(key), value.to_vec(), None),
                Op::Delete(key) => TxnOp::delete(self.layout.key(key), None),
            })
            .collect();
        let marker = || TxnOp::put(self.layout.serial_marker(), Vec::new(), None);
        let mut otherwise = Vec::new();
        if !writes.is_empty() {
            writes.push(marker());
            otherwise.push(marker());
        }
        // When it fails: whether each leader it was fenced by still leads.
        let fences: Vec<(&Arc<[u8]>, i64)> = expects
            .iter()
            .filter_map(|expect| match expect {
                Expect::Leads { key, revision } => Some((key, *revision)),
                _ => None,
            })
            .collect();
        let reads = fences.iter().map(|(key, _)| TxnOp::get(key.to_vec(), None));
        otherwise.splice(0..0, reads);
        let txn = Txn::new()
            .when(compares)
            .and_then(writes)
            .or_else(otherwise);
        let mut kv = self.kv.clone();
        let response = self.timed("txn", kv.txn(txn)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        self.metrics.observe_revision(revision);
        if response.succeeded() {
            return Ok(Committed::Done(revision));
        }
        self.metrics.conflicts.inc();
        let deposed: Vec<Arc<[u8]>> = response
            .op_responses()
            .iter()
            .zip(&fences)
            .filter(|(read, (_, revision))| {
                let created = match read {
                    TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.create_revision()),
                    _ => None,
                };
                created != Some(*revision)
            })
            .map(|(_, (key, _))| Arc::clone(key))
            .collect();
        if deposed.is_empty() {
            Ok(Committed::Conflict(revision))
        } else {
            Ok(Committed::Deposed(revision, deposed))
        }
    }

    /// Records under the prefix (for import, which needs an empty one); the serial
    /// marker, the range's first key, is not one.
    pub async fn count(&self) -> Result<i64, EtcdError> {
        let root = self.layout.root();
        let options = GetOptions::new()
            .with_range(keys::prefix_end(&root))
            .with_count_only();
        let mut first = self.layout.serial_marker();
        first.push(0);
        let mut kv = self.kv.clone();
        Ok(self
            .timed("range", kv.get(first, Some(options)))
            .await?
            .count())
    }

    fn compare(&self, expect: &Expect) -> Compare {
        match expect {
            Expect::ModRevision(key, revision) => {
                Compare::mod_revision(self.layout.key(key), CompareOp::Equal, *revision)
            }
            Expect::Created(key, revision) => {
                Compare::create_revision(self.layout.key(key), CompareOp::Equal, *revision)
            }
            Expect::Leads { key, revision } => {
                Compare::create_revision(key.to_vec(), CompareOp::Equal, *revision)
            }
            Expect::NoChildren(key) => {
                let (start, end) = self.layout.children(key);
                // Over a range, etcd compares every key in it; with none, the zero key.
                Compare::create_revision(start, CompareOp::Equal, 0).with_range(end)
            }
        }
    }

    /// Runs one request with the request timeout, counting its latency and errors.
    pub(super) async fn timed<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, EtcdError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.request_timeout, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(EtcdError::from(error)),
            Err(_) => Err(EtcdError::Timeout(self.request_timeout)),
        };
        self.metrics
            .observe_request(operation, started.elapsed(), result.is_ok());
        result
    }
}

fn tls(config: &EtcdConfig, ca: &std::path::Path) -> Result<etcd_client::TlsOptions, EtcdError> {
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read(path)
            .map_err(|e| EtcdError::Config(format!("etcd.{key}: {}: {e}", path.display())))
    };
    let mut tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(ca, "ca_file")?));
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(
            read(cert, "cert_file")?,
            read(key, "key_file")?,
        ));
    }
    Ok(tls)
}
