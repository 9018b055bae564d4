//! `/ui/sources`: every source (the files, ECS clusters, the API, DNS UPDATE, etcd) with
//! whether it has synced, its last sync (with its age) and last error, the instances it
//! owns and its task's state; ECS's reconcile and drift counters and API errors; the
//! store (the log, etcd when configured).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Rendered;
use super::html::Html;
use super::samples::Samples;
use crate::registry::{Snapshot, SourceId};
use crate::sources::SyncState;
use crate::task::{State, TaskStatus};

/// What the page reads.
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    /// The supervisor's tasks by name (sources run as tasks named by their source).
    pub tasks: Vec<(String, TaskStatus)>,
    /// The watchers' sync states (files, ECS clusters, etcd), by source id.
    pub statuses: Vec<(SourceId, SyncState)>,
    /// When the page is rendered, for the ages.
    pub now: SystemTime,
    /// The shared store's one-line status (etcd), when there is one.
    pub store: Option<String>,
    /// Why the log refuses writes, when it does.
    pub read_only: Option<Arc<String>>,
    pub samples: &'a Samples,
}

/// One source's row.
#[derive(Default)]
struct Row {
    instances: usize,
    healthy: usize,
    task: Option<(String, TaskStatus)>,
    sync: Option<SyncState>,
}

pub fn render(view: &View<'_>) -> Rendered {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for namespace in view.snapshot.namespaces.values() {
        for service in namespace.services.values() {
            for instance in service.instances.values() {
                let row = rows.entry(instance.source.to_string()).or_default();
                row.instances += 1;
                row.healthy += usize::from(instance.is_healthy());
            }
        }
    }
    for source in &view.snapshot.unsynced {
        rows.entry(source.to_string()).or_default();
    }
    for (source, state) in &view.statuses {
        rows.entry(source.to_string()).or_default().sync = Some(state.clone());
    }
    for (name, status) in &view.tasks {
        for source in task_sources(name) {
            rows.entry(source).or_default().task = Some((name.clone(), *status));
        }
    }
    let mut html = Html::default();
    html.tag("<table class=\"sources\">").head(&[
        "source",
        "kind",
        "synced",
        "last sync",
        "last error",
        "instances",
        "healthy",
        "task",
    ]);
    for (source, row) in &rows {
        let synced = !view.snapshot.unsynced.iter().any(|s| s.as_str() == source);
        html.tag("<tr data-source=\"")
            .text(source)
            .tag("\">")
            .cell(source)
            .cell(source.split(':').next().unwrap_or_default());
        match synced {
            true => html.marked("ok", "synced"),
            false => html.marked("warn", "not yet"),
        };
        sync_cells(&mut html, row.sync.as_ref(), view.now);
        html.cell(row.instances).cell(row.healthy);
        match &row.task {
            None => html.marked("muted", "-"),
            Some((name, status)) => {
                let class = match status.state {
                    State::Running => "ok",
                    State::Restarting | State::Stopped => "warn",
                    State::Dead => "bad",
                };
                html.marked(
                    class,
                    format!("{name}: {} ({} restarts)", status.state, status.restarts),
                )
            }
        };
        html.tag("</tr>");
    }
    html.tag("</table>");
    if rows.keys().any(|s| s.starts_with("ecs:")) {
        ecs(&mut html, view.samples);
    }
    store(&mut html, view);
    Rendered::new("Sources", "/ui/sources", html)
}

/// A watcher's last sync and last error, each with its age; `-` for sources that keep
/// no sync state (the API, DNS UPDATE keys).
fn sync_cells(html: &mut Html, sync: Option<&SyncState>, now: SystemTime) {
    let Some(sync) = sync else {
        html.marked("muted", "-").marked("muted", "-");
        return;
    };
    match sync.last_sync {
        Some(at) => html.cell(when(at, now)),
        None => html.marked("warn", "never"),
    };
    match &sync.last_error {
        None => html.marked("muted", "none"),
        Some((at, error)) => {
            let (class, state) = match sync.failing() {
                true => ("bad", "failing"),
                false => ("muted", "recovered"),
            };
            html.marked(class, format!("{error} ({state}; {})", when(*at, now)))
        }
    };
}

/// A time on the page: UTC to the second, and how long ago.
fn when(at: SystemTime, now: SystemTime) -> String {
    let age = now.duration_since(at).unwrap_or_default();
    let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
    format!("{} ({age} ago)", humantime::format_rfc3339_seconds(at))
}

/// The sources a supervised task runs: a file source's task is named by its source id,
/// an ECS source's `ecs:a,b` runs the clusters `ecs:a` and `ecs:b`.
fn task_sources(task: &str) -> Vec<String> {
    if task.starts_with("file:") {
        return vec![task.to_owned()];
    }
    match task.strip_prefix("ecs:") {
        Some(clusters) => clusters.split(',').map(|c| format!("ecs:{c}")).collect(),
        None => Vec::new(),
    }
}

/// The ECS source's counters: per cluster its tasks, reconciles and drift; events; the
/// AWS calls that failed.
fn ecs(html: &mut Html, samples: &Samples) {
    html.tag("<h2>ECS</h2><table class=\"ecs\">").head(&[
        "cluster",
        "tasks in DNS",
        "reconciles",
        "drift added",
        "drift removed",
        "drift changed",
    ]);
    let tasks = samples.by("muster_ecs_tasks", "cluster");
    let reconciles = samples.by("muster_ecs_reconcile_duration_seconds_count", "cluster");
    let mut clusters: Vec<&String> = tasks.keys().chain(reconciles.keys()).collect();
    clusters.sort();
    clusters.dedup();
    for cluster in clusters {
        let drift = |kind: &str| {
            samples
                .named("muster_ecs_reconcile_drift_total")
                .filter(|s| s.label("cluster") == Some(cluster) && s.label("kind") == Some(kind))
                .map(|s| s.value)
                .sum::<f64>()
        };
        html.tag("<tr data-cluster=\"")
            .text(cluster)
            .tag("\">")
            .cell(cluster)
            .cell(tasks.get(cluster).copied().unwrap_or_default())
            .cell(reconciles.get(cluster).copied().unwrap_or_default())
            .cell(drift("added"))
            .cell(drift("removed"))
            .cell(drift("changed"))
            .tag("</tr>");
    }
    html.tag("</table><p class=\"meta\">Events received ")
        .text(samples.sum("muster_ecs_events_received_total"))
        .tag(" · applied ")
        .text(samples.sum("muster_ecs_events_applied_total"))
        .tag(" · ignored ")
        .text(samples.sum("muster_ecs_events_ignored_total"))
        .tag(" · malformed ")
        .text(samples.sum("muster_ecs_events_malformed_total"))
        .tag("</p>");
    let errors: Vec<(String, f64)> = samples
        .by("muster_ecs_api_errors_total", "operation")
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .collect();
    html.tag("<p class=\"meta\">AWS API errors: ");
    if errors.is_empty() {
        html.tag("none");
    }
    for (operation, count) in errors {
        html.tag("<span class=\"bad\">")
            .text(operation)
            .tag(" ")
            .text(count)
            .tag("</span> ");
    }
    html.tag("</p>");
}

/// The local log, and the shared store with its counters.
fn store(html: &mut Html, view: &View<'_>) {
    html.tag("<h2>Store</h2><p class=\"meta\">Log: ");
    match &view.read_only {
        Some(reason) => html
            .tag("<span class=\"bad\">read-only: ")
            .text(reason)
            .tag("</span>"),
        None => html.tag("<span class=\"ok\">takes writes</span>"),
    };
    html.tag("</p>");
    let Some(status) = &view.store else {
        return;
    };
    html.tag("<p class=\"meta\">etcd: ")
        .text(status)
        .tag("</p><table class=\"etcd\">")
        .head(&["metric", "labels", "value"]);
    let samples = view.samples.prefixed("muster_etcd_");
    for sample in samples.filter(|s| !s.name.ends_with("_bucket")) {
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        html.row(&[&sample.name, &labels.join(", "), &sample.value]);
    }
    html.tag("</table>");
}
