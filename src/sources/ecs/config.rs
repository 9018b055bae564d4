//! `[[sources.ecs]]`: which clusters to watch, where the events come from, and how tasks
//! become DNS instances. Parsed raw (unknown keys rejected), then checked by
//! [`EcsSourceConfig::problems`], which `Config::settings` calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One ECS watcher: a set of clusters in one region, optionally fed by one SQS queue.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EcsSourceConfig {
    /// Cluster names or ARNs; each is its own source `ecs:<cluster name>`, so a
    /// reconcile of one cluster replaces exactly that cluster's instances.
    pub clusters: Vec<String>,
    /// The namespace the tasks' services are registered in.
    pub namespace: String,
    /// AWS region; unset means the standard chain (`AWS_REGION`, profile, IMDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The SQS queue an EventBridge rule for "ECS Task State Change" feeds. Without
    /// one, muster only reconciles (changes are seen every `reconcile_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// How often every cluster is listed and described in full, to catch missed events.
    #[serde(default = "default_reconcile_interval", with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How long one SQS receive waits for a message (`WaitTimeSeconds`, whole seconds
    /// from 1 to SQS's 20): a message ends the wait at once, so only a queue that went
    /// away or an endpoint that errs is noticed sooner with less.
    #[serde(default = "default_long_poll", with = "humantime_serde")]
    pub long_poll: Duration,
    /// Send every ECS and SQS call here instead of AWS (moto, LocalStack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Tasks whose task definition has container health checks enter DNS only once
    /// ECS reports them HEALTHY. False: RUNNING is enough.
    #[serde(default = "yes")]
    pub require_healthy: bool,
    /// Only tasks matched by a `[[sources.ecs.services]]` rule enter DNS. False: every
    /// task of an ECS service enters under that service's name as well.
    #[serde(default)]
    pub only_listed: bool,
    /// What to do with a queue message that is not a readable event: `delete` it, or
    /// `keep` it so the queue's redrive policy moves it to a dead-letter queue.
    #[serde(default)]
    pub malformed: Malformed,
    /// The container whose port is used when a rule names none: default the first
    /// essential container of the task definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Mapping rules, tried in order; the first that matches a task decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceRule>,
}

/// What happens to queue messages that cannot be read as events.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// Logged, counted and deleted: a poison message never blocks the queue.
    #[default]
    Delete,
    /// Logged, counted and left in the queue for its dead-letter redrive policy.
    Keep,
}

/// `[[sources.ecs.services]]`: which tasks (one of `ecs_service`, `family`, `tag`) and
/// what they become.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRule {
    /// Tasks of this ECS service (their `group` is `service:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs_service: Option<String>,
    /// Tasks of this task definition family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Tasks whose task definition carries this tag: `key` (the DNS name defaults to
    /// the tag's value) or `key=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The DNS service name; default the tag's value (for `tag = "key"`), else the ECS
    /// service name, else the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The SRV port; default the container's first port mapping (its host port for
    /// bridge and host networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The container whose port is used; default the source's `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Overrides the source's `require_healthy` for the matched tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_healthy: Option<bool>,
    /// False: matching tasks are left out of DNS (to hide one service of many).
    #[serde(default = "yes")]
    pub register: bool,
}

/// A rule that matches nothing yet and registers what it matches, as in TOML.
impl Default for ServiceRule {
    fn default() -> Self {
        Self {
            ecs_service: None,
            family: None,
            tag: None,
            name: None,
            port: None,
            container: None,
            require_healthy: None,
            register: true,
        }
    }
}

fn default_reconcile_interval() -> Duration {
    Duration::from_secs(60)
}

/// SQS's longest receive wait.
pub const LONGEST_POLL: Duration = Duration::from_secs(20);

fn default_long_poll() -> Duration {
    LONGEST_POLL
}

fn yes() -> bool {
    true
}

impl EcsSourceConfig {
    /// A watcher of `clusters` into `namespace` with every other key at its default.
    pub fn new(clusters: Vec<String>, namespace: &str) -> Self {
        Self {
            clusters,
            namespace: namespace.to_owned(),
            region: None,
            queue_url: None,
            reconcile_interval: default_reconcile_interval(),
            long_poll: default_long_poll(),
            endpoint_url: None,
            require_healthy: true,
            only_listed: false,
            malformed: Malformed::Delete,
            container: None,
            services: Vec::new(),
        }
    }

    /// The cluster names (an ARN's last path segment), which name the sources.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters.iter().map(|c| cluster_name(c))
    }

    /// Every problem in this table, each prefixed with `prefix` (`sources.ecs[0]`).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut say =
            |key: &str, message: String| problems.push(format!("{prefix}.{key}: {message}"));
        if self.clusters.is_empty() {
            say("clusters", "at least one cluster is needed".to_owned());
        }
        for (i, name) in self.cluster_names().enumerate() {
            if name.is_empty() || self.cluster_names().take(i).any(|n| n == name) {
                say("clusters", format!("{name:?} is empty or listed twice"));
            }
        }
        if self.reconcile_interval < Duration::from_secs(1) {
            say("reconcile_interval", "must be at least 1s".to_owned());
        }
        if self.long_poll < Duration::from_secs(1)
            || self.long_poll > LONGEST_POLL
            || self.long_poll.subsec_nanos() != 0
        {
            say(
                "long_poll",
                "must be whole seconds from 1s to 20s".to_owned(),
            );
        }
        for (i, rule) in self.services.iter().enumerate() {
            let selectors = [&rule.ecs_service, &rule.family, &rule.tag];
            if selectors.iter().filter(|s| s.is_some()).count() != 1 {
                say(
                    &format!("services[{i}]"),
                    "set exactly one of ecs_service, family, tag".to_owned(),
                );
            }
            if let Some(name) = &rule.name
                && let Err(error) = crate::registry::validate::service_name(name)
            {
                say(&format!("services[{i}].name"), error.message);
            }
            if rule.port == Some(0) {
                say(&format!("services[{i}].port"), "must be 1-65535".to_owned());
            }
        }
        problems
    }
}

/// `prod` for `prod` or `arn:aws:ecs:eu-west-1:123456789012:cluster/prod`.
pub fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_cluster_names() {
        let config: EcsSourceConfig = toml::from_str(
            "clusters = [\"arn:aws:ecs:eu-west-1:1:cluster/prod\", \"dev\"]\nnamespace = \"internal\"",
        )
        .unwrap();
        assert_eq!(config.reconcile_interval, Duration::from_secs(60));
        assert_eq!(config.long_poll, Duration::from_secs(20));
        assert!(config.require_healthy && !config.only_listed);
        assert_eq!(config.malformed, Malformed::Delete);
        assert_eq!(config.cluster_names().collect::<Vec<_>>(), ["prod", "dev"]);
        assert!(config.problems("e").is_empty());
    }

    #[test]
    fn printed_config_parses_back_unchanged() {
        let mut config = EcsSourceConfig::new(vec!["prod".into()], "internal");
        config.region = Some("eu-west-1".into());
        config.queue_url = Some("https://sqs.eu-west-1.amazonaws.com/1/q".into());
        config.reconcile_interval = Duration::from_millis(1500);
        config.long_poll = Duration::from_secs(5);
        config.endpoint_url = Some("http://127.0.0.1:5000".into());
        config.malformed = Malformed::Keep;
        config.services = vec![ServiceRule {
            tag: Some("dns".into()),
            port: Some(80),
            ..ServiceRule::default()
        }];
        let printed = toml::to_string(&config).unwrap();
        assert!(
            printed.contains("reconcile_interval = \"1s 500ms\""),
            "{printed}"
        );
        assert_eq!(toml::from_str::<EcsSourceConfig>(&printed).unwrap(), config);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut config = EcsSourceConfig::new(vec!["a".into(), "x/a".into()], "internal");
        config.reconcile_interval = Duration::from_millis(10);
        config.long_poll = Duration::from_millis(1500);
        config.services = vec![
            ServiceRule::default(),
            ServiceRule {
                family: Some("f".into()),
                tag: Some("t".into()),
                name: Some("not a label".into()),
                port: Some(0),
                ..ServiceRule::default()
            },
        ];
        let all = config.problems("sources.ecs[0]").join("\n");
        for expected in [
            "sources.ecs[0].clusters: \"a\"",
            "reconcile_interval",
            "sources.ecs[0].long_poll: must be whole seconds",
            "services[0]: set exactly one",
            "services[1]: set exactly one",
            "services[1].name",
            "services[1].port",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
        assert!(
            toml::from_str::<EcsSourceConfig>("clusters = []\nnamespace = \"a\"\nbogus = 1")
                .is_err()
        );
    }
}
