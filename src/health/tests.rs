//! The health task as muster runs it: under the supervisor, fed by the registry's
//! publish hook. A spec that skipped validation cannot panic it; a panic restarts it from
//! the registry's state with its channels intact; a denied target is not probed; on
//! paused time, a heartbeat expires at its TTL (a renewal moves it) and a check's health changes only at its
//! threshold.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CheckLimits, Health, HealthMetrics};
use crate::config::Config;
use crate::registry::{
    Change, ChangeError, CheckSpec, Instance, InstanceKey, InstanceSpec, Registry, RegistryHandle,
    Snapshot, SourceId, SpecExtras,
};
use crate::task::{State, Supervisor};

/// A registry (namespace `internal`) and the health task on it, both stopped by `stop`.
struct Setup {
    registry: RegistryHandle,
    health: Health,
    metrics: HealthMetrics,
    supervisor: Supervisor,
    stop: CancellationToken,
}

impl Setup {
    fn start(limits: CheckLimits) -> Self {
        let namespaces = Config::default().settings().unwrap().namespaces;
        let mut registry = Registry::new(Snapshot::new(namespaces, []));
        let stop = CancellationToken::new();
        let metrics = HealthMetrics::default();
        let (health, task) = Health::new(registry.handle(), metrics.clone(), limits, stop.clone());
        registry.on_publish(health.publish_hook());
        let handle = registry.handle();
        tokio::spawn(registry.run(stop.clone()));
        let supervisor = Supervisor::new(stop.clone(), &mut Default::default());
        supervisor.spawn("health", move || task.run());
        Self {
            registry: handle,
            health,
            metrics,
            supervisor,
            stop,
        }
    }

    /// Registers `id` in `internal/hb` as `source`, unvalidated (as a replayed log is).
    async fn register(&self, id: &str, spec: InstanceSpec, source: &str) {
        let change = Change::Upsert {
            key: key(id),
            spec,
            source: SourceId::new(source),
        };
        self.registry.apply(change).await.unwrap();
    }

    fn instance(&self, id: &str) -> Arc<Instance> {
        let snapshot = self.registry.snapshot();
        snapshot
            .service("internal", "hb")
            .unwrap()
            .instances
            .get(id)
            .unwrap()
            .clone()
    }

    async fn wait_for(&self, id: &str, what: &str, test: impl Fn(&Instance) -> bool) {
        for _ in 0..300 {
            if test(&self.instance(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id}: {what} within 3 s; it is {:?}", self.instance(id));
    }

    fn restarts(&self) -> (State, u64) {
        let (_, status) = self.supervisor.states().list().remove(0);
        (status.state, status.restarts)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn key(id: &str) -> InstanceKey {
    InstanceKey {
        namespace: "internal".into(),
        service: "hb".into(),
        id: id.into(),
    }
}

fn with_ttl(ttl: Duration) -> InstanceSpec {
    InstanceSpec {
        ipv4: Some("10.0.0.1".parse().unwrap()),
        healthy: true,
        extras: SpecExtras {
            heartbeat_ttl: Some(ttl),
            ..SpecExtras::default()
        }
        .into(),
        ..InstanceSpec::default()
    }
}

fn tcp_check(json: &str) -> Option<Arc<CheckSpec>> {
    Some(Arc::new(serde_json::from_str(json).unwrap()))
}

/// The issue's attack, as an old log replays it: a century-long interval and TTL, and an
/// interval whose 80% overflows. The task used to panic ("invalid deadline"). The
/// registry's writer now refuses such specs from any sender, a replayed log included (the
/// arithmetic that would have overflowed saturates too: `check.rs`'s tests), and the task
/// goes on timing everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_that_skipped_validation_never_reach_the_task() {
    let setup = Setup::start(CheckLimits::default());
    let huge = Duration::from_secs(100 * 365 * 86_400);
    for (id, interval) in [("century", "100y"), ("overflow", "150000000000y")] {
        let mut spec = InstanceSpec {
            port: Some(80),
            ..with_ttl(huge)
        };
        let check = tcp_check(&format!(r#"{{"tcp": true, "interval": "{interval}"}}"#));
        spec.extras.edit(|extras| extras.check = check);
        let change = Change::Upsert {
            key: key(id),
            spec,
            source: SourceId::new("api"),
        };
        let refused = setup.registry.apply(change).await;
        assert!(
            matches!(refused, Err(ChangeError::Invalid(_))),
            "{refused:?}"
        );
    }
    setup
        .register("short", with_ttl(Duration::from_millis(200)), "api")
        .await;
    setup
        .wait_for("short", "heartbeat expired", |i| !i.heartbeat_ok)
        .await;
    setup.health.heartbeat(key("short")).await.unwrap();
    assert!(setup.instance("short").heartbeat_ok);
    assert_eq!(
        setup.restarts(),
        (State::Running, 0),
        "the task never panicked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_restarts_the_task_with_its_channels() {
    let setup = Setup::start(CheckLimits::default());
    setup
        .register("a", with_ttl(Duration::from_secs(30)), "api")
        .await;
    setup.health.heartbeat(key("a")).await.unwrap();

    setup.health.crash();
    // Sent while the task is down or restarting: answered by the next run.
    setup.health.heartbeat(key("a")).await.unwrap();
    assert_eq!(setup.restarts(), (State::Running, 1));

    // The publish hook feeds the new run: a new instance's deadline is kept...
    setup
        .register("b", with_ttl(Duration::from_millis(200)), "api")
        .await;
    setup
        .wait_for("b", "heartbeat expired", |i| !i.heartbeat_ok)
        .await;
    // ...and its heartbeat brings it back.
    setup.health.heartbeat(key("b")).await.unwrap();
    assert!(setup.instance("b").heartbeat_ok);
}

/// An instance from another source (here a file) whose check target `[health]` denies
/// is not probed; its check_reason says why and its health is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_target_is_not_checked_and_says_why() {
    let setup = Setup::start(CheckLimits::default());
    let spec = InstanceSpec {
        ipv4: Some("169.254.169.254".parse().unwrap()),
        port: Some(80),
        healthy: true,
        extras: SpecExtras {
            check: tcp_check(r#"{"tcp": true, "interval": "100ms"}"#),
            ..SpecExtras::default()
        }
        .into(),
        ..InstanceSpec::default()
    };
    setup.register("imds", spec, "file:/etc/static.toml").await;
    setup
        .wait_for("imds", "a reason", |i| i.check_reason.is_some())
        .await;
    let instance = setup.instance("imds");
    let reason = instance.check_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("not checked: 169.254.169.254 is in [health] deny 169.254.0.0/16"),
        "{reason}"
    );
    // Probed every 100 ms, it would have failed twice (80 ms timeouts) by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(setup.instance("imds").is_healthy(), "health unchanged");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_expires_at_its_ttl_not_before() {
    let setup = Setup::start(CheckLimits::default());
    setup
        .register("beat", with_ttl(Duration::from_secs(30)), "api")
        .await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(
        setup.instance("beat").heartbeat_ok,
        "expired before its TTL"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let instance = setup.instance("beat");
    assert!(!instance.heartbeat_ok, "not expired after its TTL");
    assert!(!instance.is_healthy());
}

/// A service whose instances had no timer gains one when a later change registers an
/// instance with a TTL beside them: the hook reads only that change's instances, and
/// still starts the task's timers.
#[tokio::test(start_paused = true)]
async fn a_ttl_registered_beside_instances_without_timers_expires() {
    let setup = Setup::start(CheckLimits::default());
    let plain = InstanceSpec {
        ipv4: Some(std::net::Ipv4Addr::new(10, 0, 0, 1)),
        healthy: true,
        ..InstanceSpec::default()
    };
    setup.register("plain", plain.clone(), "api").await;
    setup.register("other", plain, "api").await;
    setup
        .register("beat", with_ttl(Duration::from_secs(30)), "api")
        .await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(
        !setup.instance("beat").heartbeat_ok,
        "not expired after its TTL"
    );
    assert!(
        setup.instance("plain").heartbeat_ok,
        "an instance without a TTL expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_moves_the_deadline_a_whole_ttl_on() {
    let setup = Setup::start(CheckLimits::default());
    setup
        .register("beat", with_ttl(Duration::from_secs(30)), "api")
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    setup.health.heartbeat(key("beat")).await.unwrap();
    // 40 s after registering, 20 s after the heartbeat: alive.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        setup.instance("beat").heartbeat_ok,
        "the heartbeat did not count"
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        !setup.instance("beat").heartbeat_ok,
        "not expired a TTL after the heartbeat"
    );
}

/// `deregister_after` removes an API instance unhealthy that long, counted from its
/// expiry; one that recovers in time stays, and so does a file's.
#[tokio::test(start_paused = true)]
async fn an_api_instance_unhealthy_past_deregister_after_is_deregistered() {
    let setup = Setup::start(CheckLimits::default());
    let mut spec = with_ttl(Duration::from_secs(10));
    spec.extras
        .edit(|extras| extras.deregister_after = Some(Duration::from_secs(60)));
    setup.register("dead", spec.clone(), "api").await;
    setup.register("back", spec.clone(), "api").await;
    setup
        .register("static", spec, "file:/etc/static.toml")
        .await;
    let exists = |id: &str| {
        let snapshot = setup.registry.snapshot();
        snapshot
            .service("internal", "hb")
            .is_some_and(|s| s.instances.contains(id))
    };
    // Expired at 10 s; "back" recovers at 40 s and expires again at 50 s.
    tokio::time::sleep(Duration::from_secs(40)).await;
    setup.health.heartbeat(key("back")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(exists("dead"), "deregistered before 60 s unhealthy");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!exists("dead"), "not deregistered 61 s after its expiry");
    assert!(
        exists("back"),
        "the clock did not start over when it recovered"
    );
    assert!(exists("static"), "a file's instance was deregistered");
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(
        !exists("back"),
        "not deregistered 60 s after its second expiry"
    );
    assert!(exists("static"));
    assert_eq!(setup.metrics.deregistered.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_turns_unhealthy_only_at_its_threshold() {
    let mut health = Config::default().settings().unwrap().health;
    health.allow.push("127.0.0.1/32".parse().unwrap());
    let setup = Setup::start(CheckLimits::new(&health));
    // A port nothing listens on: every probe fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = InstanceSpec {
        ipv4: Some("127.0.0.1".parse().unwrap()),
        port: Some(port),
        healthy: true,
        extras: SpecExtras {
            check: tcp_check(r#"{"tcp": true, "interval": "10s", "unhealthy_threshold": 3}"#),
            ..SpecExtras::default()
        }
        .into(),
        ..InstanceSpec::default()
    };
    setup.register("down", spec, "file:/etc/static.toml").await;
    // The first check runs within one interval, the next one interval later: by 9 s at
    // most one has failed.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        setup.instance("down").is_healthy(),
        "unhealthy before 3 failures"
    );
    for _ in 0..60 {
        if !setup.instance("down").is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let instance = setup.instance("down");
    assert!(
        !instance.is_healthy(),
        "3 failed checks did not turn it unhealthy"
    );
    let reason = instance.check_reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("3 consecutive checks failed"),
        "{reason}"
    );
}
