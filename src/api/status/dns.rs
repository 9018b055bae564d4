//! `/ui/dns`: queries per second and by response code and type, truncations, transfers
//! and NOTIFYs, response rate limiting, forwarding, TCP, and each zone's serial — the
//! `muster_dns_*` counters as `/metrics` shows them, and the published zone.

use std::time::Duration;

use super::Rendered;
use super::html::Html;
use super::samples::Samples;
use crate::dns::ZoneSnapshot;

/// The query counter, whose rate is the page's queries per second.
pub const QUERIES: &str = "muster_dns_queries_total";

/// `rate`: queries per second and the span it was measured over, once there is one.
pub fn render(samples: &Samples, rate: Option<(f64, Duration)>, zone: &ZoneSnapshot) -> Rendered {
    let mut html = Html::default();
    html.tag("<p class=\"summary\">Queries answered <b id=\"queries\">")
        .text(samples.sum(QUERIES))
        .tag("</b> · ");
    match rate {
        Some((per_second, over)) => html
            .tag("<b id=\"qps\">")
            .text(format!("{per_second:.1}"))
            .tag("</b> per second over the last ")
            .text(over.as_secs())
            .tag(" s"),
        None => html.tag("queries per second: measuring"),
    };
    html.tag(" · truncated (TC) ")
        .text(samples.sum("muster_dns_truncated_total"))
        .tag("</p><div class=\"columns\">");
    counts(
        &mut html,
        "Response codes",
        "rcode",
        samples.by(QUERIES, "rcode"),
    );
    counts(
        &mut html,
        "Query types",
        "qtype",
        samples.by(QUERIES, "qtype"),
    );
    let transfers = samples.by("muster_dns_transfers_total", "kind");
    counts(&mut html, "Zone transfers", "kind", transfers);
    let notify = samples.by("muster_dns_notify_total", "result");
    counts(&mut html, "NOTIFY", "result", notify);
    let mut rrl = samples.by("muster_dns_rrl_dropped_total", "class");
    for (class, slipped) in samples.by("muster_dns_rrl_slipped_total", "class") {
        rrl.insert(format!("{class} slipped"), slipped);
    }
    counts(&mut html, "Rate limiting (dropped, slipped)", "class", rrl);
    let mut other = std::collections::BTreeMap::new();
    for name in [
        "muster_dns_forwarded_total",
        "muster_dns_forward_rejected_total",
        "muster_dns_handoff_dropped_total",
    ] {
        let short = name
            .trim_start_matches("muster_dns_")
            .trim_end_matches("_total");
        other.insert(short.to_owned(), samples.sum(name));
    }
    for sample in samples.prefixed("muster_dns_tcp_") {
        if sample.labels.is_empty() {
            let short = sample.name.trim_start_matches("muster_dns_");
            other.insert(short.to_owned(), sample.value);
        }
    }
    counts(&mut html, "Forwarding and TCP", "counter", other);
    html.tag("</div>");
    zones(&mut html, zone);
    Rendered::new("DNS", "/ui/dns", html)
}

/// A small table of one counter by one label; only series that are not zero, so the
/// page shows what happened.
fn counts(
    html: &mut Html,
    title: &'static str,
    label: &'static str,
    values: std::collections::BTreeMap<String, f64>,
) {
    html.tag("<section><h2>")
        .tag(title)
        .tag("</h2><table>")
        .head(&[label, "count"]);
    let mut any = false;
    for (key, value) in values.into_iter().filter(|(_, v)| *v > 0.0) {
        any = true;
        html.tag("<tr data-key=\"")
            .text(&key)
            .tag("\">")
            .cell(&key)
            .cell(value)
            .tag("</tr>");
    }
    if !any {
        html.tag("<tr><td class=\"muted\" colspan=\"2\">none</td></tr>");
    }
    html.tag("</table></section>");
}

/// Each zone: origin, SOA serial, services in DNS, IXFR journal length.
fn zones(html: &mut Html, zone: &ZoneSnapshot) {
    html.tag("<h2>Zones</h2><table class=\"zones\">").head(&[
        "origin",
        "SOA serial",
        "services",
        "IXFR journal (changes)",
    ]);
    let mut zones: Vec<_> = zone.namespaces().collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    for records in zones {
        let serial = records.soa.soa_serial();
        html.tag("<tr data-zone=\"")
            .text(&records.name)
            .tag("\">")
            .cell(&records.origin)
            .cell(serial)
            .cell(records.services.len())
            .cell(records.journal.len())
            .tag("</tr>");
    }
    html.tag("</table>");
}
