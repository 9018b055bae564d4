//! One HTTP or TCP check of one instance, and what its result says about the instance.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::registry::CheckSpec;

/// What one check says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The instance failed the check; the text says how.
    Fail(String),
    /// The check could not run for a reason of muster's own (no file descriptor, no
    /// buffer, no local port, the probe's task failed): it says nothing about the
    /// instance, so it counts neither as a pass nor as a failure.
    Inconclusive(String),
}

/// Runs `check` against `address`, giving up after `timeout`.
pub async fn probe(
    client: &reqwest::Client,
    address: SocketAddr,
    check: &CheckSpec,
    timeout: Duration,
) -> Verdict {
    match &check.http {
        Some(path) => http(client, address, path, check, timeout).await,
        None => match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(_)) => Verdict::Pass,
            Ok(Err(error)) => failed(&error, format!("TCP {address}: {error}")),
            Err(_) => Verdict::Fail(format!("TCP {address}: no connection within {timeout:?}")),
        },
    }
}

async fn http(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    check: &CheckSpec,
    timeout: Duration,
) -> Verdict {
    let url = format!("http://{address}{path}");
    let mut request = client.get(&url).timeout(timeout);
    let url = shown(&url);
    if let Some(host) = &check.host {
        request = request.header(reqwest::header::HOST, host);
    }
    match request.send().await {
        Ok(response) if check.statuses().contains(&response.status().as_u16()) => Verdict::Pass,
        Ok(response) => Verdict::Fail(format!("HTTP {} from {url}", response.status().as_u16())),
        Err(error) if error.is_timeout() => {
            Verdict::Fail(format!("{url}: no answer within {timeout:?}"))
        }
        Err(error) if error.is_connect() => failed(
            &error,
            format!("{url}: cannot connect ({})", root_cause(&error)),
        ),
        Err(error) => failed(&error, format!("{url}: {}", root_cause(&error))),
    }
}

/// `url` as a failure reason names it: without its query, which can carry a credential,
/// while every reader of the instance (REST, the change stream, the status pages) sees
/// the reason.
fn shown(url: &str) -> String {
    match url.split_once('?') {
        Some((before, _)) => format!("{before}?…"),
        None => url.to_owned(),
    }
}

/// A failed probe: the instance's failure, unless an error in the chain of `error` is a
/// local shortage.
fn failed(error: &(dyn std::error::Error + 'static), text: String) -> Verdict {
    let mut cause = Some(error);
    while let Some(error) = cause {
        cause = error.source();
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if is_local(io) {
                return Verdict::Inconclusive(text);
            }
            // An io::Error wrapping another error hides it from `source()`.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
            }
        }
    }
    Verdict::Fail(text)
}

/// Errors that say muster could not make the attempt, not that the instance refused it:
/// out of file descriptors (the process's or the system's), socket buffers, memory, or
/// local ports.
fn is_local(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_shortages_are_inconclusive() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let wrapped = std::io::Error::other(emfile);
        assert!(matches!(
            failed(&wrapped, "x".into()),
            Verdict::Inconclusive(_)
        ));
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(failed(&refused, "x".into()), Verdict::Fail("x".into()));
    }

    #[test]
    fn reasons_leave_out_the_query() {
        assert_eq!(
            shown("http://10.0.0.1:80/h?token=s3cret"),
            "http://10.0.0.1:80/h?…"
        );
        assert_eq!(shown("http://10.0.0.1:80/h"), "http://10.0.0.1:80/h");
    }
}
