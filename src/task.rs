//! Supervised background tasks: the health task, the file and ECS sources, NOTIFY.
//!
//! A background task that panics must not leave muster half-alive (DNS answering while
//! heartbeats fail and checks have stopped). [`Supervisor::spawn`] runs a task from a
//! factory; when a run panics it logs an error, counts it and starts a new run after a
//! short backoff, and the new run rebuilds its state from the registry. A task that
//! panics more than [`MAX_PANICS`] times within [`PANIC_WINDOW`] is dead:
//! [`Supervisor::dead`] resolves, and [`crate::Running::wait`] stops the process with an
//! error (exit 3) so that the process supervisor (systemd, ECS) starts it afresh.
//! `/healthz` answers 503 while a task is not running ([`TaskStates`]).
//!
//! - **Metrics:** `muster_task_restarts_total{task}`.
//! - Must not: restart a task that returned (tasks return at shutdown), or restart
//!   anything once the stop token has fired.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Panics within [`PANIC_WINDOW`] that a task survives; one more and it is dead.
pub const MAX_PANICS: usize = 5;
/// How far back panics count towards [`MAX_PANICS`].
pub const PANIC_WINDOW: Duration = Duration::from_secs(60);
/// The wait before the first restart; it doubles with each panic in the window.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a supervised task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// It panicked and waits for its restart.
    Restarting,
    /// It returned (at shutdown).
    Stopped,
    /// It panicked too often; muster is stopping.
    Dead,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
            Self::Dead => "dead",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

/// One task's state and how often it was restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    pub state: State,
    pub restarts: u64,
}

struct Shared {
    tasks: Mutex<BTreeMap<String, TaskStatus>>,
    /// The first task that died.
    dead: watch::Sender<Option<String>>,
    restarts: Family<TaskLabels, Counter>,
}

impl Shared {
    fn set(&self, task: &str, state: State) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let status = tasks
            .entry(task.to_owned())
            .or_insert(TaskStatus { state, restarts: 0 });
        status.state = state;
        if state == State::Restarting {
            status.restarts += 1;
        }
    }
}

/// Runs and restarts the long-running tasks.
pub struct Supervisor {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// Every supervised task's state, for `/healthz`.
#[derive(Clone)]
pub struct TaskStates(Arc<Shared>);

impl Supervisor {
    /// A supervisor whose tasks stop being restarted once `stop` fires; its metric is
    /// registered in `metrics`.
    pub fn new(stop: CancellationToken, metrics: &mut Registry) -> Self {
        let shared = Arc::new(Shared {
            tasks: Mutex::default(),
            dead: watch::Sender::new(None),
            restarts: Family::default(),
        });
        metrics.sub_registry_with_prefix("muster_task").register(
            "restarts",
            "Restarts of a background task after it panicked, by task",
            shared.restarts.clone(),
        );
        Self {
            shared,
            tracker: TaskTracker::new(),
            stop,
        }
    }

    /// Runs `run()` as the task `name` (unique: a source id, `health`, `notify`), and
    /// again after each panic, until it returns or dies.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        self.shared.set(&name, State::Running);
        // At zero from the start, so the series exists before the first restart.
        drop(
            self.shared
                .restarts
                .get_or_create(&TaskLabels { task: name.clone() }),
        );
        let (shared, stop) = (self.shared.clone(), self.stop.clone());
        self.tracker.spawn(supervise(name, run, shared, stop));
    }

    /// The states, for `/healthz`.
    pub fn states(&self) -> TaskStates {
        TaskStates(self.shared.clone())
    }

    /// Resolves with the name of the first task that died.
    pub async fn dead(&self) -> String {
        let mut dead = self.shared.dead.subscribe();
        let name = dead
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|n| n.clone());
        match name {
            Some(name) => name,
            // The sender lives in `shared`, as long as `self`: this never happens.
            None => std::future::pending().await,
        }
    }

    /// Waits until every task has returned (after the stop token fired).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl TaskStates {
    /// Every task with its status, by name.
    pub fn list(&self) -> Vec<(String, TaskStatus)> {
        let tasks = self.0.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.iter().map(|(n, s)| (n.clone(), *s)).collect()
    }

    /// The tasks that are not running.
    pub fn down(&self) -> Vec<(String, TaskStatus)> {
        let mut tasks = self.list();
        tasks.retain(|(_, status)| status.state != State::Running);
        tasks
    }
}

/// Runs `run()` until it returns; restarts it after a panic with a backoff, unless it
/// panicked too often or `stop` fired.
async fn supervise<F, Fut>(name: String, mut run: F, shared: Arc<Shared>, stop: CancellationToken)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut panics: VecDeque<Instant> = VecDeque::new();
    loop {
        shared.set(&name, State::Running);
        let error = match tokio::spawn(run()).await {
            Err(error) if error.is_panic() => error,
            // Returned, or cancelled by the runtime shutting down.
            _ => {
                shared.set(&name, State::Stopped);
                return;
            }
        };
        let now = Instant::now();
        panics.retain(|at| now.duration_since(*at) < PANIC_WINDOW);
        panics.push_back(now);
        let message = panic_message(error);
        if panics.len() > MAX_PANICS {
            tracing::error!(task = %name, panics = panics.len(), window = ?PANIC_WINDOW, %message,
                "a background task panicked too often; stopping muster");
            shared.set(&name, State::Dead);
            shared.dead.send_if_modified(|dead| {
                dead.is_none() && {
                    *dead = Some(name.clone());
                    true
                }
            });
            return;
        }
        let doublings = u32::try_from(panics.len() - 1).unwrap_or(u32::MAX).min(16);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF);
        tracing::error!(task = %name, %message, restart_in = ?backoff,
            "a background task panicked; restarting it");
        shared.set(&name, State::Restarting);
        shared
            .restarts
            .get_or_create(&TaskLabels { task: name.clone() })
            .inc();
        tokio::select! {
            _ = stop.cancelled() => {
                shared.set(&name, State::Stopped);
                return;
            }
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

fn panic_message(error: JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(error) => error.to_string(),
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
