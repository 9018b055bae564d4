//! One HTTP or TCP check of one instance.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::registry::CheckSpec;

/// Where a check goes: the instance's address (IPv4 first) and the check's or the
/// instance's port.
pub fn target(ip: IpAddr, port: Option<u16>, check: &CheckSpec) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip, check.port.or(port)?))
}

/// Runs `check` against `address`; `Err` says what failed.
pub async fn probe(
    client: &reqwest::Client,
    address: SocketAddr,
    check: &CheckSpec,
) -> Result<(), String> {
    let timeout = check.timeout();
    match &check.http {
        Some(path) => http(client, address, path, check, timeout).await,
        None => match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("TCP {address}: {error}")),
            Err(_) => Err(format!("TCP {address}: no connection within {timeout:?}")),
        },
    }
}

async fn http(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    check: &CheckSpec,
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("http://{address}{path}");
    let mut request = client.get(&url).timeout(timeout);
    if let Some(host) = &check.host {
        request = request.header(reqwest::header::HOST, host);
    }
    match request.send().await {
        Ok(response) if check.statuses().contains(&response.status().as_u16()) => Ok(()),
        Ok(response) => Err(format!("HTTP {} from {url}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Err(format!("{url}: no answer within {timeout:?}")),
        Err(error) if error.is_connect() => {
            Err(format!("{url}: cannot connect ({})", root_cause(&error)))
        }
        Err(error) => Err(format!("{url}: {}", root_cause(&error))),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
