//! `muster register`, `deregister`, `health`, `drain` and `undrain`: the REST API's writes.
//! Each is answered once the change is durable and in DNS (docs/rest.md), so a command that
//! returned 0 has changed what DNS answers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Api, instance_path};
use super::settings::{Common, Output};
use super::{Failure, Target, print_json};

/// `muster register`'s arguments.
#[derive(clap::Args)]
pub struct Register {
    /// namespace/service/instance-id.
    target: String,
    /// The instance's address: IPv4 or IPv6; repeat for one of each.
    #[arg(long = "ip", required = true, value_name = "ADDRESS")]
    ips: Vec<IpAddr>,
    /// The port of its SRV records.
    #[arg(long)]
    port: Option<u16>,
    /// A named port, repeatable: NAME=PORT (TCP) or NAME=PORT/udp, answered at
    /// _NAME._tcp.SERVICE.NAMESPACE.
    #[arg(long = "named-port", value_name = "NAME=PORT[/udp]")]
    named_ports: Vec<String>,
    /// An attribute, repeatable: KEY=VALUE (`weight` and `priority` set its SRV's).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// An active health check: http:PATH (e.g. http:/healthz) or tcp.
    #[arg(long, value_name = "http:PATH|tcp")]
    check: Option<String>,
    /// The check's interval (e.g. 1s, 200ms).
    #[arg(long, requires = "check", value_name = "DURATION")]
    check_interval: Option<String>,
    /// Unhealthy when no heartbeat comes this long (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    heartbeat_ttl: Option<String>,
    /// Deregistered once unhealthy this long (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    deregister_after: Option<String>,
    /// Register it unhealthy (out of answers until `muster health ... up`).
    #[arg(long)]
    unhealthy: bool,
    #[command(flatten)]
    common: Common,
}

/// `muster health`'s state.
#[derive(clap::ValueEnum, Clone, Copy)]
pub enum HealthState {
    Up,
    Down,
}

pub async fn register(args: Register) -> Result<(), Failure> {
    let target = Target::parse(&args.target, 3, 3)?;
    let body = args.body()?;
    let api = args.common.connect()?;
    let answer = api.send(Method::PUT, &path(&target), Some(&body)).await?;
    report(&api, &answer, &format!("registered {}", args.target));
    Ok(())
}

pub async fn deregister(api: &Api, target: &str) -> Result<(), Failure> {
    let parsed = Target::parse(target, 3, 3)?;
    let answer = api.send(Method::DELETE, &path(&parsed), None).await?;
    report(api, &answer, &format!("deregistered {target}"));
    Ok(())
}

pub async fn health(api: &Api, target: &str, state: HealthState) -> Result<(), Failure> {
    let parsed = Target::parse(target, 3, 3)?;
    let healthy = matches!(state, HealthState::Up);
    let body = json!({ "healthy": healthy });
    let path = format!("{}/health", path(&parsed));
    let answer = api.send(Method::PUT, &path, Some(&body)).await?;
    let word = if healthy { "healthy" } else { "unhealthy" };
    report(api, &answer, &format!("{target} reported {word}"));
    Ok(())
}

/// `drain` (PUT) or `undrain` (DELETE).
pub async fn drain(api: &Api, target: &str, draining: bool) -> Result<(), Failure> {
    let parsed = Target::parse(target, 3, 3)?;
    let method = if draining {
        Method::PUT
    } else {
        Method::DELETE
    };
    let path = format!("{}/drain", path(&parsed));
    let answer = api.send(method, &path, None).await?;
    let word = if draining { "drained" } else { "undrained" };
    report(api, &answer, &format!("{word} {target}"));
    Ok(())
}

fn path(target: &Target) -> String {
    let service = target.service.as_deref().unwrap_or_default();
    let id = target.id.as_deref().unwrap_or_default();
    instance_path(&target.namespace, service, id)
}

/// The server's answer as JSON, or one line with the revision that holds the change.
fn report(api: &Api, answer: &Value, done: &str) {
    match api.output {
        Output::Json => print_json(answer),
        Output::Table => match answer["revision"].as_u64() {
            Some(revision) => println!("{done} (revision {revision})"),
            None => println!("{done}"),
        },
    }
}

impl Register {
    /// The registration body of docs/rest.md.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = serde_json::Map::new();
        for ip in &self.ips {
            let key = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            if body.insert(key.to_owned(), json!(ip.to_string())).is_some() {
                return Err(Failure::Usage(format!(
                    "--ip: at most one {key} address per instance"
                )));
            }
        }
        if let Some(port) = self.port {
            body.insert("port".into(), json!(port));
        }
        let mut ports = serde_json::Map::new();
        for spec in &self.named_ports {
            let (name, port) = pair("--named-port", spec)?;
            let (port, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
            let port: u16 = port.parse().map_err(|_| {
                Failure::Usage(format!("--named-port {spec:?}: {port:?} is not a port"))
            })?;
            ports.insert(name.into(), json!({"port": port, "protocol": protocol}));
        }
        if !ports.is_empty() {
            body.insert("ports".into(), Value::Object(ports));
        }
        let mut attributes = BTreeMap::new();
        for spec in &self.attributes {
            let (key, value) = pair("--attr", spec)?;
            attributes.insert(key, value);
        }
        if !attributes.is_empty() {
            body.insert("attributes".into(), json!(attributes));
        }
        if let Some(check) = &self.check {
            let mut spec = match (check.as_str(), check.strip_prefix("http:")) {
                (_, Some(path)) if path.starts_with('/') => json!({ "http": path }),
                ("tcp", _) => json!({ "tcp": true }),
                _ => {
                    return Err(Failure::Usage(format!(
                        "--check {check:?}: expected http:/PATH or tcp"
                    )));
                }
            };
            if let Some(interval) = &self.check_interval {
                spec["interval"] = json!(interval);
            }
            body.insert("check".into(), spec);
        }
        for (key, value) in [
            ("heartbeat_ttl", &self.heartbeat_ttl),
            ("deregister_after", &self.deregister_after),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if self.unhealthy {
            body.insert("healthy".into(), json!(false));
        }
        Ok(Value::Object(body))
    }
}

/// `KEY=VALUE` split at the first `=`; the key must not be empty.
fn pair<'a>(flag: &str, spec: &'a str) -> Result<(&'a str, &'a str), Failure> {
    match spec.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(Failure::Usage(format!(
            "{flag} {spec:?}: expected KEY=VALUE"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        register: Register,
    }

    fn body(args: &[&str]) -> Result<Value, Failure> {
        let argv = ["register", "prod/web/i-1"].iter().chain(args);
        Args::try_parse_from(argv).unwrap().register.body()
    }

    #[test]
    fn flags_make_the_documented_body() {
        let body = body(&[
            "--ip",
            "10.0.0.5",
            "--ip",
            "fd00::5",
            "--port",
            "8080",
            "--attr",
            "zone=a=b",
            "--attr",
            "weight=0",
            "--named-port",
            "dns=53/udp",
            "--check",
            "http:/healthz",
            "--check-interval",
            "1s",
            "--heartbeat-ttl",
            "3s",
            "--unhealthy",
        ])
        .unwrap();
        assert_eq!(
            body,
            json!({
                "ipv4": "10.0.0.5", "ipv6": "fd00::5", "port": 8080,
                "attributes": {"zone": "a=b", "weight": "0"},
                "ports": {"dns": {"port": 53, "protocol": "udp"}},
                "check": {"http": "/healthz", "interval": "1s"},
                "heartbeat_ttl": "3s", "healthy": false,
            })
        );
    }

    #[test]
    fn malformed_flags_are_usage_errors() {
        for args in [
            &["--ip", "10.0.0.5", "--ip", "10.0.0.6"][..],
            &["--ip", "10.0.0.5", "--attr", "=x"],
            &["--ip", "10.0.0.5", "--check", "http:healthz"],
            &["--ip", "10.0.0.5", "--named-port", "grpc=http"],
        ] {
            assert!(matches!(body(args), Err(Failure::Usage(_))), "{args:?}");
        }
    }
}
