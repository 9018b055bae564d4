//! `/ui/namespaces/{ns}/services/{svc}`: every instance of a service with its address,
//! ports, source, health and why it is unhealthy, its check and heartbeat, drain state,
//! attributes, and the DNS records it contributes, read from the published zone (the
//! records DNS answers with, not a re-derivation).

use axum::http::StatusCode;

use super::html::Html;
use super::{MAX_ROWS, Rendered, more, without_queries};
use crate::dns::ZoneSnapshot;
use crate::registry::{CheckSpec, Instance, Service, Snapshot};

pub fn render(snapshot: &Snapshot, zone: &ZoneSnapshot, ns: &str, svc: &str) -> Rendered {
    let namespace = ns.trim_end_matches('.').to_ascii_lowercase();
    let name = svc.to_ascii_lowercase();
    let Some(service) = snapshot.service(&namespace, &name) else {
        let mut html = Html::default();
        html.tag("<p class=\"bad\">No service ")
            .text(format!("{svc:?}"))
            .tag(" in namespace ")
            .text(format!("{ns:?}"))
            .tag(".</p><p>");
        html.link(&[], "All namespaces").tag("</p>");
        return Rendered {
            status: StatusCode::NOT_FOUND,
            ..Rendered::new("No such service", "", html)
        };
    };
    let mut html = Html::default();
    summary(&mut html, service);
    let records = zone
        .namespace(&namespace)
        .and_then(|z| z.services.get(name.as_str()));
    html.tag("<table class=\"instances\">").head(&[
        "instance",
        "address",
        "port",
        "source",
        "health",
        "why unhealthy",
        "check",
        "heartbeat",
        "drain",
        "attributes",
        "DNS records",
    ]);
    // Both in id order: one walk finds each instance's served records.
    let mut served = records
        .map_or(&[][..], |r| &r.instances[..])
        .iter()
        .peekable();
    for instance in service.instances.values().take(MAX_ROWS) {
        while served.next_if(|s| s.source.id < instance.id).is_some() {}
        let served = served.next_if(|s| s.source.id == instance.id);
        html.tag("<tr data-instance=\"")
            .text(&instance.id)
            .tag("\">")
            .cell(&instance.id)
            .cell(address(instance));
        ports(&mut html, instance);
        html.cell(&instance.source);
        match instance.is_healthy() {
            true => html.marked("ok", "healthy"),
            false => html.marked("bad", "unhealthy"),
        };
        html.cell(why_unhealthy(instance).join("; "));
        match instance.check(&service.policy) {
            Some(check) => html.cell(check_text(check)),
            None => html.marked("muted", "none"),
        };
        heartbeat(&mut html, instance);
        match instance.is_draining() {
            true => html.marked("warn", "draining"),
            false => html.marked("muted", "no"),
        };
        attributes(&mut html, instance);
        html.tag("<td class=\"records\">");
        match served {
            Some(served) => {
                for rr in served.records() {
                    html.tag("<code>").text(rr.record()).tag("</code><br>");
                }
            }
            None if !service.in_dns() => {
                html.tag("<span class=\"muted\">none: HTTP-only service</span>");
            }
            None => {
                html.tag("<span class=\"muted\">none: not served</span>");
            }
        }
        html.tag("</td></tr>");
    }
    html.tag("</table>");
    more(&mut html, service.instances.len(), "instances");
    html.tag("<p>");
    html.link(&[], "All namespaces").tag("</p>");
    Rendered::new(format!("{}.{}", service.name, namespace), "", html)
}

/// The service's policy, in one line.
fn summary(html: &mut Html, service: &Service) {
    let policy = &service.policy;
    html.tag("<p class=\"meta\">")
        .text(service.instances.len())
        .tag(" instances · ")
        .text(service.healthy_count())
        .tag(" healthy · ")
        .text(service.serving().count())
        .tag(" in answers · routing ")
        .text(config_name(&policy.routing))
        .tag(" · at most ")
        .text(match policy.max_answers {
            0 => "every".to_owned(),
            n => n.to_string(),
        })
        .tag(" per answer · when all are unhealthy: ")
        .text(config_name(&policy.when_all_unhealthy))
        .tag("</p>");
}

/// A policy value as the configuration writes it (`serve_all`).
fn config_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "-".to_owned(),
    }
}

fn address(instance: &Instance) -> String {
    let spec = &instance.spec;
    let addresses: Vec<String> = [
        spec.ipv4.map(|ip| ip.to_string()),
        spec.ipv6.map(|ip| ip.to_string()),
    ]
    .into_iter()
    .flatten()
    .chain(spec.cname().iter().map(|c| format!("CNAME {c}")))
    .collect();
    addresses.join(", ")
}

/// The port, then each named port.
fn ports(html: &mut Html, instance: &Instance) {
    let spec = &instance.spec;
    html.tag("<td>")
        .text(spec.port.map_or("-".to_owned(), |p| p.to_string()));
    for (name, port) in spec.ports() {
        html.tag("<br>")
            .text(name)
            .tag(": ")
            .text(port.port)
            .tag("/")
            .text(port.protocol.label().trim_start_matches('_'));
    }
    html.tag("</td>");
}

/// Each reason the instance is out of answers, as the registry holds them. The check's
/// reason names the URL it asked; its query string is left out (see [`check_text`]).
fn why_unhealthy(instance: &Instance) -> Vec<String> {
    let mut why = Vec::new();
    if !instance.spec.healthy {
        why.push(format!("{} reports it unhealthy", instance.source));
    }
    if !instance.heartbeat_ok {
        let ttl = instance.spec.heartbeat_ttl().unwrap_or_default();
        why.push(format!(
            "no heartbeat within {}",
            humantime::format_duration(ttl)
        ));
    }
    if !instance.check_ok {
        why.push(match &instance.check_reason {
            Some(reason) => without_queries(reason),
            None => "its check fails".to_owned(),
        });
    }
    why
}

/// `HTTP GET /healthz :8080 every 1s, 2 to fail, 2 to pass`. A query string is left out:
/// it could carry a credential.
fn check_text(check: &CheckSpec) -> String {
    let what = match &check.http {
        Some(path) => match path.split_once('?') {
            Some((path, _)) => format!("HTTP GET {path}?…"),
            None => format!("HTTP GET {path}"),
        },
        None => "TCP connect".to_owned(),
    };
    let port = check.port.map(|p| format!(" :{p}")).unwrap_or_default();
    format!(
        "{what}{port} every {}, {} to fail, {} to pass",
        humantime::format_duration(check.period()),
        check.unhealthy_threshold,
        check.healthy_threshold
    )
}

fn heartbeat(html: &mut Html, instance: &Instance) {
    match (instance.spec.heartbeat_ttl(), instance.heartbeat_ok) {
        (None, _) => html.marked("muted", "none"),
        (Some(ttl), true) => html.marked(
            "ok",
            format!("on time (TTL {})", humantime::format_duration(ttl)),
        ),
        (Some(ttl), false) => html.marked(
            "bad",
            format!("expired (TTL {})", humantime::format_duration(ttl)),
        ),
    };
}

fn attributes(html: &mut Html, instance: &Instance) {
    html.tag("<td class=\"attributes\">");
    for (key, value) in &instance.spec.attributes {
        html.tag("<code>")
            .text(key)
            .tag("=")
            .text(value)
            .tag("</code><br>");
    }
    html.tag("</td>");
}
