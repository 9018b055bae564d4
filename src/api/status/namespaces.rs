//! `/ui/`: every namespace with its zone's serial and TTLs, and each of its services with
//! instances, healthy, draining and served counts.

use super::html::Html;
use super::{MAX_ROWS, Rendered, more};
use crate::dns::ZoneSnapshot;
use crate::registry::{RecordTtls, RegistryHandle, Snapshot};

pub fn render(snapshot: &Snapshot, zone: &ZoneSnapshot, registry: &RegistryHandle) -> Rendered {
    let mut html = Html::default();
    html.tag("<p class=\"summary\">Revision <b>")
        .text(snapshot.revision)
        .tag("</b> · ");
    if snapshot.is_synced() {
        html.tag("<span class=\"ok\">every source synced</span>");
    } else {
        let pending: Vec<&str> = snapshot.unsynced.iter().map(|s| s.as_str()).collect();
        html.tag("<span class=\"warn\">waiting for ")
            .text(pending.join(", "))
            .tag(" (DNS answers SERVFAIL)</span>");
    }
    if let Some(reason) = registry.read_only() {
        html.tag(" · <span class=\"bad\">read-only: ")
            .text(reason)
            .tag("</span>");
    }
    html.tag("</p>");
    if snapshot.namespaces.is_empty() {
        html.tag("<p class=\"muted\">No namespaces.</p>");
    }
    for (name, namespace) in &snapshot.namespaces {
        let records = zone.namespace(name);
        let serial = records.map(|z| z.soa.soa_serial());
        let settings = &namespace.settings;
        html.tag("<section class=\"namespace\" data-namespace=\"")
            .text(name)
            .tag("\"><h2>")
            .text(name)
            .tag("</h2><p class=\"meta\">");
        match serial {
            Some(serial) => html.tag("SOA serial <b>").text(serial).tag("</b>"),
            None => html.tag("no DNS zone (HTTP namespace)"),
        };
        html.tag(" · TTL ")
            .text(settings.ttl)
            .tag(" s · negative TTL ")
            .text(settings.negative_ttl)
            .tag(" s · ")
            .text(namespace.services.len())
            .tag(" services · ")
            .text(namespace.instance_count())
            .tag(" instances</p>");
        if namespace.services.is_empty() {
            html.tag("<p class=\"muted\">No services.</p></section>");
            continue;
        }
        html.tag("<table class=\"services\">").head(&[
            "service",
            "instances",
            "healthy",
            "draining",
            "in DNS",
            "TTLs (A / AAAA / SRV / CNAME)",
        ]);
        for service in namespace.services.values().take(MAX_ROWS) {
            let total = service.instances.len();
            let healthy = service.healthy_count();
            let draining = service
                .instances
                .values()
                .filter(|i| i.is_draining())
                .count();
            let served = match service.in_dns() {
                true => service.serving().count().to_string(),
                false => "HTTP only".to_owned(),
            };
            html.tag("<tr data-service=\"")
                .text(&service.name)
                .tag("\"><td>");
            html.link(
                &["namespaces", name, "services", &service.name],
                &service.name,
            );
            html.tag("</td>").cell(total);
            let class = match (healthy, total) {
                (h, t) if h == t => "ok",
                (0, _) => "bad",
                _ => "warn",
            };
            html.marked(class, healthy)
                .cell(draining)
                .cell(served)
                .cell(ttls(&service.policy.records))
                .tag("</tr>");
        }
        html.tag("</table>");
        more(&mut html, namespace.services.len(), "services");
        html.tag("</section>");
    }
    Rendered::new("Namespaces", "/ui/", html)
}

/// `5 / 5 / 5 / -`: each record type's TTL, `-` for a type not served.
fn ttls(records: &RecordTtls) -> String {
    [records.a, records.aaaa, records.srv, records.cname]
        .map(|ttl| ttl.map_or("-".to_owned(), |t| t.to_string()))
        .join(" / ")
}
