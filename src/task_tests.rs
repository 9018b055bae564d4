//! The supervisor: restarts after a panic, death after too many, and muster stopping with
//! an error (and `/healthz` saying so) when a task dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::*;

/// A task that panics on its first `panics` runs, then runs until `stop`.
fn flaky(
    runs: &Arc<AtomicUsize>,
    panics: usize,
    stop: &CancellationToken,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
    let (runs, stop) = (runs.clone(), stop.clone());
    move || {
        let run = runs.fetch_add(1, Ordering::SeqCst);
        let stop = stop.clone();
        Box::pin(async move {
            if run < panics {
                panic!("run {run} panics");
            }
            stop.cancelled().await
        })
    }
}

fn status(supervisor: &Supervisor, name: &str) -> TaskStatus {
    let states = supervisor.states().list();
    states.into_iter().find(|(n, _)| n == name).unwrap().1
}

fn metrics_text(metrics: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, metrics).unwrap();
    text
}

#[tokio::test(start_paused = true)]
async fn a_task_that_panics_is_restarted_after_a_backoff() {
    let stop = CancellationToken::new();
    let mut metrics = Registry::default();
    let supervisor = Supervisor::new(stop.clone(), &mut metrics);
    let runs = Arc::new(AtomicUsize::new(0));
    supervisor.spawn("flaky", flaky(&runs, 2, &stop));

    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(status(&supervisor, "flaky").state, State::Restarting);
    assert_eq!(supervisor.states().down().len(), 1);
    // The first restart comes after FIRST_BACKOFF, the second after twice that.
    tokio::time::sleep(FIRST_BACKOFF).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    tokio::time::sleep(FIRST_BACKOFF * 2).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let flaky = status(&supervisor, "flaky");
    assert_eq!((flaky.state, flaky.restarts), (State::Running, 2));
    assert!(supervisor.states().down().is_empty());
    assert!(
        metrics_text(&metrics).contains("muster_task_restarts_total{task=\"flaky\"} 2"),
        "{}",
        metrics_text(&metrics)
    );

    stop.cancel();
    supervisor.wait().await;
    assert_eq!(status(&supervisor, "flaky").state, State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_keeps_panicking_is_dead() {
    let stop = CancellationToken::new();
    let supervisor = Supervisor::new(stop.clone(), &mut Registry::default());
    let runs = Arc::new(AtomicUsize::new(0));
    supervisor.spawn("steady", flaky(&Arc::new(AtomicUsize::new(0)), 0, &stop));
    supervisor.spawn("bomb", flaky(&runs, usize::MAX, &stop));

    let started = Instant::now();
    assert_eq!(supervisor.dead().await, "bomb");
    assert_eq!(runs.load(Ordering::SeqCst), MAX_PANICS + 1);
    assert!(started.elapsed() < PANIC_WINDOW, "{:?}", started.elapsed());
    assert_eq!(status(&supervisor, "bomb").state, State::Dead);
    assert_eq!(status(&supervisor, "steady").state, State::Running);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        MAX_PANICS + 1,
        "no restart once dead"
    );
}

#[tokio::test(start_paused = true)]
async fn panics_spread_over_time_are_survived() {
    let stop = CancellationToken::new();
    let supervisor = Supervisor::new(stop.clone(), &mut Registry::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    // Panics every 20 s: never more than MAX_PANICS within the window.
    supervisor.spawn("rare", move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            panic!("again");
        }
    });
    let dead = tokio::time::timeout(Duration::from_secs(600), supervisor.dead()).await;
    assert!(dead.is_err(), "died: {dead:?}");
    assert!(runs.load(Ordering::SeqCst) > 2 * MAX_PANICS);
    assert_eq!(status(&supervisor, "rare").state, State::Running);
}

/// The whole process: `/healthz` names a task that is down, `?verbose` lists every task,
/// and once a task dies `Running::wait` returns an error (`muster serve` exits 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muster_stops_with_an_error_when_a_task_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let running = crate::start(config, CancellationToken::new())
        .await
        .unwrap();
    let url = format!("http://{}/healthz", running.http_addr);
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get(url.clone()).await, (200, "ok\n".to_owned()));
    let (status, verbose) = get(format!("{url}?verbose")).await;
    assert_eq!(status, 200);
    assert!(
        verbose.contains("task health: running (restarts: 0)"),
        "{verbose}"
    );

    let stop = CancellationToken::new();
    running.tasks.spawn(
        "bomb",
        flaky(&Arc::new(AtomicUsize::new(0)), usize::MAX, &stop),
    );
    let mut seen = (0, String::new());
    for _ in 0..200 {
        seen = get(url.clone()).await;
        if seen.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen.0, 503, "{seen:?}");
    assert!(seen.1.contains("task bomb: restarting"), "{seen:?}");
    assert!(
        !seen.1.contains("health"),
        "only the tasks that are down: {seen:?}"
    );

    let result = tokio::time::timeout(Duration::from_secs(30), running.wait()).await;
    match result {
        Ok(Err(crate::Error::TaskDied(task))) => assert_eq!(task, "bomb"),
        other => panic!("muster did not stop with TaskDied: {other:?}"),
    }
}
