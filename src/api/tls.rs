//! TLS for the `[http]` listener: the certificate and key files, loaded at start and
//! followed while running.
//!
//! rustls with the aws-lc-rs provider (the one the AWS SDK already builds; no second
//! crypto library). The files are re-read on SIGHUP (a reload delivered by
//! [`ConfigUpdates`]) and when their modification time, size or inode changes (checked
//! every [`POLL_INTERVAL`], so an atomic rename by certbot or cert-manager is seen).
//! A pair that does not load (unreadable, not PEM, key not matching the certificate)
//! keeps the one in force: one error line per attempt, counted in
//! `muster_http_tls_reloads_total{result="error"}`; a later change is tried again.
//! New connections get the new certificate; open ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::HttpMetrics;
use crate::config::HttpConfig;
use crate::reload::ConfigUpdates;

/// How often the files' metadata is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The largest certificate or key file read: a chain is a few KiB.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate in force, shared by the listener (per handshake) and the reloader.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ArcSwap<ServerConfig>>,
    files: Files,
}

#[derive(Clone, Debug, PartialEq)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// Loads the pair `http` names; `None` when TLS is off.
    pub fn load(http: &HttpConfig) -> Result<Option<Self>, TlsError> {
        let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let config = server_config(&files)?;
        Ok(Some(Self {
            config: Arc::new(ArcSwap::new(config)),
            files,
        }))
    }

    /// An acceptor with the certificate in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Re-reads the files on every reload and whenever they change, until `shutdown`.
    pub async fn follow(
        self,
        mut updates: ConfigUpdates,
        metrics: Arc<HttpMetrics>,
        shutdown: CancellationToken,
    ) {
        let mut files = self.files.clone();
        let mut seen = stamp(&files);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let mut reloads_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = updates.changed(), if reloads_open => {
                    if changed.is_err() {
                        reloads_open = false;
                        continue;
                    }
                    let http = updates.borrow_and_update().http.clone();
                    if let (Some(cert), Some(key)) = (http.tls_cert, http.tls_key) {
                        files = Files { cert, key };
                    }
                    seen = stamp(&files);
                    self.reload(&files, &metrics);
                }
                _ = poll.tick() => {
                    let now = stamp(&files);
                    if now != seen {
                        seen = now;
                        self.reload(&files, &metrics);
                    }
                }
            }
        }
    }

    fn reload(&self, files: &Files, metrics: &HttpMetrics) {
        match server_config(files) {
            Ok(config) => {
                self.config.store(config);
                metrics.tls_reloaded("ok");
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                metrics.tls_reloaded("error");
                tracing::error!(%error, "TLS certificate not reloaded; the previous one is still served");
            }
        }
    }
}

/// What tells a file changed: modification time, size, inode (None: unreadable).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(files: &Files) -> [Stamp; 2] {
    use std::os::unix::fs::MetadataExt;
    [&files.cert, &files.key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len(), meta.ino()))
    })
}

fn server_config(files: &Files) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(&files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}
