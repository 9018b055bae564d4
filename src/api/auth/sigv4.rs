//! AWS Signature Version 4: verifying the `Authorization` header of a request.
//!
//! The server recomputes what the client signed (AWS's "Create a signed AWS API request"):
//!
//! 1. the canonical request: method, canonical URI (dot segments removed, then each path
//!    segment percent-encoded again, as every AWS service but S3 does), canonical query
//!    (pairs decoded, re-encoded with AWS's unreserved set, sorted), the signed headers
//!    (lowercase names, values trimmed with inner runs of spaces collapsed, repeated
//!    headers joined with `,`), the signed header names, and the hex SHA-256 of the body;
//! 2. the string to sign: `AWS4-HMAC-SHA256`, `X-Amz-Date`, the credential scope
//!    `DATE/REGION/SERVICE/aws4_request`, and the hex SHA-256 of the canonical request;
//! 3. the signing key: HMAC-SHA256 from `"AWS4" + secret` over date, region, service,
//!    `aws4_request`; the signature is HMAC-SHA256 of the string to sign with it,
//!
//! and compares the result with the client's signature in constant time
//! (`Mac::verify_slice`). Before that it checks what AWS checks: the credential scope
//! (date equal to `X-Amz-Date`'s, the configured region, the expected service), the
//! headers that must be signed, and `X-Amz-Date` within [`MAX_SKEW`] of the server's
//! clock. Errors carry AWS's messages; the caller maps them to AWS's error types.
//!
//! Only header signatures are accepted (no presigned URLs), and no session tokens:
//! muster issues no temporary credentials, so a request carrying `X-Amz-Security-Token`
//! is refused as AWS refuses an invalid token. The body is always hashed
//! (`UNSIGNED-PAYLOAD` is S3's).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The one algorithm SigV4 signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from the server's clock, either way (AWS: 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Longest `Authorization` header looked at; real ones are ~200 bytes.
const MAX_AUTHORIZATION: usize = 4096;
/// Most signed headers accepted.
const MAX_SIGNED_HEADERS: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// The parts of an HTTP request that a signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded once by the client).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What the server expects of a signature.
pub struct Expected<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// Headers that must be among the signed ones (lowercase); `host` always is.
    pub signed: &'a [&'a str],
    pub now: SystemTime,
}

/// Why a signature was not accepted, with AWS's message for each case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header (`MissingAuthenticationTokenException`).
    #[error("Request is missing Authentication Token")]
    Missing,
    /// The header is not a well-formed SigV4 header (`IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not configured, or a session token was sent
    /// (`UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// `X-Amz-Date` is too far from the server's clock (`InvalidSignatureException`).
    #[error("{0}")]
    Expired(String),
    /// The scope or the signed headers are not what the server expects
    /// (`InvalidSignatureException`).
    #[error("{0}")]
    Invalid(String),
    /// The signature does not match (`InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    )]
    Mismatch,
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: [u8; 32],
}

/// Verifies `request`'s signature; `secret_of` gives the secret of an access key id (or
/// none for an unknown one). Returns the access key id that signed it.
pub fn verify<'r, S: AsRef<[u8]>>(
    request: &SignedRequest<'r>,
    expected: &Expected<'_>,
    secret_of: impl FnOnce(&str) -> Option<S>,
) -> Result<&'r str, SigError> {
    let header = request
        .headers
        .get("authorization")
        .ok_or(SigError::Missing)?;
    let header = header
        .to_str()
        .map_err(|_| SigError::Incomplete("Authorization header is not ASCII".into()))?;
    let authorization = parse_authorization(header)?;
    if request.headers.contains_key("x-amz-security-token") {
        return Err(SigError::UnknownKey);
    }
    let amz_date = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SigError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .into(),
            )
        })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SigError::Incomplete(format!(
            "X-Amz-Date {amz_date:?} must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        ))
    })?;
    check_scope(&authorization, amz_date, expected)?;
    let secret = secret_of(authorization.key_id).ok_or(SigError::UnknownKey)?;
    check_skew(signed_at, expected.now)?;
    let canonical = canonical_request(request, &authorization.signed_headers);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        authorization.date, authorization.region, authorization.service
    );
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(
        secret.as_ref(),
        authorization.date,
        authorization.region,
        authorization.service,
    );
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&authorization.signature)
        .map_err(|_| SigError::Mismatch)?;
    Ok(authorization.key_id)
}

/// Parses the `Authorization` header (AWS's `IncompleteSignatureException` messages).
pub fn parse_authorization(header: &str) -> Result<Authorization<'_>, SigError> {
    let incomplete = |message: &str| SigError::Incomplete(message.to_owned());
    if header.len() > MAX_AUTHORIZATION {
        return Err(incomplete("Authorization header is too long"));
    }
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| {
            SigError::Incomplete(format!(
                "Authorization header's algorithm must be {ALGORITHM}"
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err(incomplete(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
            ));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(SigError::Incomplete(format!(
                "Authorization header has '{name}' twice"
            )));
        }
    }
    let credential = credential
        .ok_or_else(|| incomplete("Authorization header requires 'Credential' parameter."))?;
    let signed = signed
        .ok_or_else(|| incomplete("Authorization header requires 'SignedHeaders' parameter."))?;
    let signature = signature
        .ok_or_else(|| incomplete("Authorization header requires 'Signature' parameter."))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminal] = scope[..] else {
        return Err(incomplete(
            "Credential must have the form KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if key_id.is_empty() || terminal != "aws4_request" {
        return Err(incomplete(
            "Credential must have the form KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    let valid_name = |name: &&str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    };
    if signed_headers.len() > MAX_SIGNED_HEADERS || !signed_headers.iter().all(valid_name) {
        return Err(incomplete(
            "SignedHeaders must be lowercase header names separated by ';'",
        ));
    }
    let signature = decode_hex(signature)
        .ok_or_else(|| incomplete("Signature must be 64 hexadecimal characters"))?;
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

fn check_scope(
    authorization: &Authorization<'_>,
    amz_date: &str,
    expected: &Expected<'_>,
) -> Result<(), SigError> {
    let day = &amz_date[..8];
    if authorization.date != day {
        return Err(SigError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{amz_date}'.",
            authorization.date
        )));
    }
    if authorization.region != expected.region {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            authorization.region
        )));
    }
    if authorization.service != expected.service {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expected.service
        )));
    }
    for required in std::iter::once(&"host").chain(expected.signed) {
        if !authorization.signed_headers.contains(required) {
            return Err(SigError::Invalid(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    Ok(())
}

fn check_skew(signed_at: SystemTime, now: SystemTime) -> Result<(), SigError> {
    let basic = |time: SystemTime| format_amz_date(time);
    if signed_at + MAX_SKEW < now {
        return Err(SigError::Expired(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            basic(signed_at),
            basic(now - MAX_SKEW),
            basic(now)
        )));
    }
    if signed_at > now + MAX_SKEW {
        return Err(SigError::Expired(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            basic(signed_at),
            basic(now + MAX_SKEW),
            basic(now)
        )));
    }
    Ok(())
}

/// The canonical request (step 1), as bytes: header values need not be UTF-8.
pub fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + request.path.len() + request.query.len());
    out.extend_from_slice(request.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(request.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(request.query).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in request.headers.get_all(*name).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all(value.as_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hex(&Sha256::digest(request.body)).as_bytes());
    out
}

/// The string to sign (step 2).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request))
    )
}

/// The signing key (step 3).
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = Vec::with_capacity(4 + secret.len());
    key.extend_from_slice(b"AWS4");
    key.extend_from_slice(secret);
    let mut derived = hmac(&key, date.as_bytes());
    for part in [region, service, "aws4_request"] {
        derived = hmac(&derived, part.as_bytes());
    }
    derived
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A header value with leading and trailing spaces removed and inner runs of spaces
/// collapsed to one (AWS's "Trimall"; only spaces, as the SDKs do).
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    let mut previous_space = false;
    for &byte in &value[start..end] {
        let space = byte == b' ';
        if !(space && previous_space) {
            out.push(byte);
        }
        previous_space = space;
    }
}

/// The path with dot segments and empty segments removed (RFC 3986 5.2.4), then encoded
/// again: each byte outside AWS's unreserved set and `/` becomes `%XX`.
fn canonical_uri(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = ["/", "/.", "/..", "/./", "/../"]
        .iter()
        .any(|end| path.ends_with(end));
    let mut normalized = String::with_capacity(path.len() + 1);
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || (trailing && !normalized.ends_with('/')) {
        normalized.push('/');
    }
    let mut encoded = String::with_capacity(normalized.len());
    encode_into(normalized.as_bytes(), b"/", &mut encoded);
    encoded
}

/// The query's pairs decoded (`+` is a space, as form encoding has it), encoded with
/// AWS's unreserved set, sorted by name then value, joined with `&`.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut encoded_name = String::new();
            let mut encoded_value = String::new();
            encode_into(&percent_decode(name), b"", &mut encoded_name);
            encode_into(&percent_decode(value), b"", &mut encoded_value);
            (encoded_name, encoded_value)
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() * 2);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Percent-encodes every byte but `A-Za-z0-9-_.~` and the bytes in `keep`.
fn encode_into(bytes: &[u8], keep: &[u8], out: &mut String) {
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `yyyyMMddTHHmmssZ` → the time it names.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    let extended = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    humantime::parse_rfc3339(&extended).ok()
}

/// The time as `yyyyMMddTHHmmssZ`.
pub fn format_amz_date(time: SystemTime) -> String {
    let time = time.max(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}
