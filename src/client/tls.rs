//! TLS for an `https://` server: rustls with aws-lc-rs, as muster's own listener, with the
//! certificates of `--ca-file` (or the system's roots) as trust anchors.
//!
//! A certificate that is itself in the CA file is also accepted when the server presents
//! it (pinned), if it names the host and is valid now: a self-signed certificate made by
//! `openssl req -x509` is marked as a CA, which webpki refuses as a server's own
//! (`CaUsedAsEndEntity`) although the operator trusted exactly that certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Failure;

/// The largest CA file read: a bundle of every public root is ~250 KiB.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The client's TLS: checked against `ca_file`'s certificates, else the system's roots
/// (read only for an `https://` server; a plain HTTP one gets a config it never uses).
pub fn config(https: bool, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Failure> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Local(format!("cannot set up TLS: {e}")))?;
    if !https {
        return Ok(builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    let pinned = match ca_file {
        Some(path) => read_certificates(path)?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(pinned.iter().cloned());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| {
            let from = ca_file.map_or("the system's roots".into(), |p| p.display().to_string());
            Failure::Local(format!("no certificate to trust in {from}: {e}"))
        })?;
    let verifier = Verifier {
        webpki,
        pinned: pinned.into_iter().filter(|_| ca_file.is_some()).collect(),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The PEM certificates of a CA file.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let failed = |e: String| Failure::Local(format!("{}: {e}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| failed(e.to_string()))?
        .len();
    if size > MAX_CA_FILE_BYTES {
        return Err(failed(format!(
            "{size} bytes, more than a CA file holds ({MAX_CA_FILE_BYTES})"
        )));
    }
    let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".to_owned()));
    }
    Ok(certificates)
}

/// webpki's verdict, but a CA file's own certificate presented by the server stands.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The CA file's certificates (none with the system's roots).
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            // webpki checks the validity period before it refuses a CA as the server's.
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if other.0.downcast_ref::<webpki::Error>()
                    == Some(&webpki::Error::CaUsedAsEndEntity)
                    && self
                        .pinned
                        .iter()
                        .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
