//! `/ui/changes`: the registry's recent changes, newest first — when, what happened, to
//! which instance, service or namespace, whose it is and why — from the registry's ring
//! of recent changes (the entries `/v1/watch` streams). A reason's URLs are shown without
//! their query strings, as on the service page.

use super::html::Html;
use super::{Rendered, without_queries};
use crate::registry::{ChangeEntry, Event, RecentChanges};

pub fn render(recent: &RecentChanges) -> Rendered {
    let mut html = Html::default();
    let entries: Vec<_> = recent.entries().rev().collect();
    html.tag("<p class=\"summary\">Index <b>")
        .text(recent.index())
        .tag("</b> · the last ")
        .text(entries.len())
        .tag(" changes, newest first</p><table class=\"changes\">")
        .head(&["index", "time (UTC)", "event", "what", "source", "why"]);
    if entries.is_empty() {
        html.tag("<tr><td class=\"muted\" colspan=\"6\">No change since muster started.</td></tr>");
    }
    for entry in entries {
        html.tag("<tr data-index=\"")
            .text(entry.index)
            .tag("\">")
            .cell(entry.index)
            .cell(humantime::format_rfc3339_millis(entry.time))
            .marked(class(entry.event), entry.event.as_str());
        what(&mut html, entry);
        html.cell(entry.source.as_ref().map_or("", |s| s.as_str()))
            .cell(
                entry
                    .reason
                    .as_deref()
                    .map(without_queries)
                    .unwrap_or_default(),
            )
            .tag("</tr>");
    }
    html.tag("</table>");
    Rendered::new("Recent changes", "/ui/changes", html)
}

/// `instance in svc.ns`, linked to the service's page while the service may exist.
fn what(html: &mut Html, entry: &ChangeEntry) {
    html.tag("<td>");
    match (&entry.service, &entry.instance) {
        (Some(service), instance) => {
            if let Some(instance) = instance {
                html.text(instance).tag(" in ");
            }
            let name = format!("{service}.{}", entry.namespace);
            match entry.event {
                Event::ServiceDeleted => html.text(name),
                _ => html.link(&["namespaces", &entry.namespace, "services", service], name),
            };
        }
        (None, _) => {
            html.tag("namespace ").text(&entry.namespace);
        }
    }
    html.tag("</td>");
}

fn class(event: Event) -> &'static str {
    match event {
        Event::Healthy | Event::Registered | Event::Undrained => "ok",
        Event::Unhealthy | Event::Deregistered => "bad",
        Event::Drained => "warn",
        _ => "muted",
    }
}
