//! Configuration: TOML parsed raw (unknown keys rejected), then validated as a whole.
//!
//! One file per table: [`dns`] (`[dns]`, `[forward]`, `[transfer]`), [`dns_tcp`],
//! [`rrl`], [`update`], [`http`]
//! (`[http]`, `[ops]`), [`auth`], [`health`], [`limits`], [`cloudmap`], [`etcd`] and
//! [`namespaces`]; the sources' tables live with each source (`sources::<name>::config`).
//! Every key is documented in `muster.example.toml` at the repository root; a test keeps
//! that file and these types in step. With no file, [`Config::default`] is the embedded
//! default from DESIGN.md.

mod auth;
mod cloudmap;
mod dns;
mod dns_tcp;
mod etcd;
mod health;
mod http;
mod limits;
mod namespaces;
mod rrl;
mod update;
mod zones;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use auth::{AccessKeyConfig, AuthConfig, PermissionConfig, Secret, TokenConfig};
pub use cloudmap::CloudMapConfig;
pub use dns::{
    DnsServerConfig, ForwardConfig, TransferConfig, TransferSettings, TsigKeyConfig, TsigSecret,
};
pub use dns_tcp::DnsTcpConfig;
pub use etcd::EtcdConfig;
pub use health::{HealthConfig, HealthSettings};
pub use http::{HttpConfig, OpsConfig};
pub use limits::LimitsConfig;
pub use namespaces::{NamespaceConfig, ServiceRuleConfig};
pub use rrl::RrlConfig;
pub use update::{UpdateConfig, UpdateGrant, UpdateKeyConfig, same_name};
pub use zones::ZoneConfig;

use crate::registry::{Admission, NamePattern, NamespaceSettings};
use crate::sources::ecs::EcsSourceConfig;
use crate::sources::file::FileSourceConfig;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where durable state lives (write-ahead log, snapshots).
    pub data_dir: PathBuf,
    pub dns: DnsServerConfig,
    pub http: HttpConfig,
    pub ops: OpsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub health: HealthConfig,
    /// The namespaces muster is authoritative for. A file without `[[namespaces]]` has
    /// none (a pure Cloud Map user creates them through the API); only the embedded
    /// default, with no file at all, serves `internal`.
    #[serde(default)]
    pub namespaces: Vec<NamespaceConfig>,
    pub sources: SourcesConfig,
    pub cloudmap: CloudMapConfig,
    pub forward: ForwardConfig,
    pub transfer: TransferConfig,
    pub update: UpdateConfig,
    /// The registry on etcd, shared by replicas; without it, the local log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdConfig>,
    /// Where clients are, for zone-aware answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneConfig>,
}

/// `[sources]`: the watchers that feed the registry (the API is always on).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<FileSourceConfig>,
    /// ECS clusters whose service tasks are registered (see `sources::ecs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecs: Vec<EcsSourceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./muster-data"),
            dns: DnsServerConfig::default(),
            http: HttpConfig::default(),
            ops: OpsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            health: HealthConfig::default(),
            namespaces: vec![NamespaceConfig::named("internal")],
            sources: SourcesConfig::default(),
            cloudmap: CloudMapConfig::default(),
            forward: ForwardConfig::default(),
            transfer: TransferConfig::default(),
            update: UpdateConfig::default(),
            etcd: None,
            zones: Vec::new(),
        }
    }
}

/// Why a configuration cannot be used; lists every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Environment variables that override keys, for containers: name, key it sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    (
        "MUSTER_DNS_LISTEN",
        "dns.listen (comma-separated addresses)",
    ),
    ("MUSTER_HTTP_LISTEN", "http.listen"),
    ("MUSTER_DATA_DIR", "data_dir"),
    (
        "MUSTER_ETCD_PASSWORD",
        "the etcd password (when etcd.password_file is not set)",
    ),
];

impl Config {
    /// Reads and parses `path`; does not validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML text; unknown keys are errors. Does not validate.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The configuration as TOML that [`Config::parse`] reads back unchanged.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config types serialize to TOML")
    }

    /// Applies the `MUSTER_*` overrides in [`ENV_OVERRIDES`], read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Some(value) = var("MUSTER_DNS_LISTEN") {
            match value
                .split(',')
                .map(|a| SocketAddr::from_str(a.trim()))
                .collect()
            {
                Ok(listen) => self.dns.listen = listen,
                Err(e) => problems.push(format!("MUSTER_DNS_LISTEN={value:?}: {e}")),
            }
        }
        if let Some(value) = var("MUSTER_HTTP_LISTEN") {
            match SocketAddr::from_str(value.trim()) {
                Ok(listen) => self.http.listen = listen,
                Err(e) => problems.push(format!("MUSTER_HTTP_LISTEN={value:?}: {e}")),
            }
        }
        if let Some(value) = var("MUSTER_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Checks everything that parsing cannot, and returns every value that start-up would
    /// otherwise parse again, typed. Reports all problems at once.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let rrl_exempt = self.dns.validate(&mut problems);
        problems.extend(self.http.problems());
        problems.extend(self.ops.problems());
        problems.extend(self.auth.problems(self.http.listen));
        problems.extend(self.limits.problems());
        let health = self.health.validate(&mut problems);
        let allowed_namespaces = self.cloudmap.validate(&mut problems);
        let namespaces = self.namespace_settings(&mut problems);
        self.source_problems(&mut problems);
        problems.extend(self.forward.problems());
        let transfer = self.transfer.validate(&mut problems);
        let update_grants = self.update.validate(&self.transfer, &mut problems);
        problems.extend(self.etcd.iter().flat_map(EtcdConfig::problems));
        let zones = ZoneConfig::subnets(&self.zones, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(Settings {
            namespaces,
            rrl_exempt,
            health,
            allowed_namespaces,
            transfer,
            update_grants,
            zones,
        })
    }

    /// The settings of `[[namespaces]]`, with their problems pushed to `problems`.
    fn namespace_settings(&self, problems: &mut Vec<String>) -> Vec<NamespaceSettings> {
        let mut settings = Vec::new();
        let mut names = Vec::new();
        for (i, namespace) in self.namespaces.iter().enumerate() {
            let name = namespace.normalized_name();
            if names.contains(&name) {
                problems.push(format!(
                    "namespaces[{i}].name: {name:?} is configured twice"
                ));
            }
            names.push(name);
            for (j, rule) in namespace.services.iter().enumerate() {
                if let Some(check) = &rule.check
                    && check.interval < self.health.min_interval
                {
                    problems.push(format!(
                        "namespaces[{i}].services[{j}].check.interval: below health.min_interval"
                    ));
                }
            }
            match namespace.settings() {
                Ok(s) => settings.push(s),
                Err(errors) => {
                    problems.extend(errors.into_iter().map(|e| format!("namespaces[{i}].{e}")))
                }
            }
        }
        settings
    }

    /// Pushes the problems of `[sources]` to `problems`.
    fn source_problems(&self, problems: &mut Vec<String>) {
        let names: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.normalized_name())
            .collect();
        let mut paths: Vec<&Path> = Vec::new();
        for (i, file) in self.sources.file.iter().enumerate() {
            if paths.contains(&file.path.as_path()) {
                problems.push(format!(
                    "sources.file[{i}].path: {} is configured twice",
                    file.path.display()
                ));
            }
            paths.push(&file.path);
        }
        let mut clusters: Vec<&str> = Vec::new();
        for (i, ecs) in self.sources.ecs.iter().enumerate() {
            problems.extend(ecs.problems(&format!("sources.ecs[{i}]")));
            let namespace = ecs.namespace.trim_end_matches('.').to_ascii_lowercase();
            if !names.contains(&namespace) {
                problems.push(format!(
                    "sources.ecs[{i}].namespace: {:?} is not a configured namespace",
                    ecs.namespace
                ));
            }
            for cluster in ecs.cluster_names() {
                if clusters.contains(&cluster) {
                    problems.push(format!(
                        "sources.ecs[{i}].clusters: {cluster:?} is watched by another [[sources.ecs]]"
                    ));
                }
                clusters.push(cluster);
            }
        }
    }

    /// The ceilings and name rules the registry's writer holds API changes to, with the
    /// configured namespaces and name patterns of `settings`.
    pub fn admission(&self, settings: &Settings) -> Admission {
        Admission {
            namespaces: self.limits.namespaces,
            services_per_namespace: self.limits.services_per_namespace,
            instances_per_service: self.limits.instances_per_service,
            instances: self.limits.instances,
            attribute_bytes: self.limits.attribute_bytes,
            allowed_namespaces: settings.allowed_namespaces.clone(),
            config_namespaces: settings.namespaces.iter().map(|n| n.name.clone()).collect(),
        }
    }
}

/// What [`Config::settings`] derives from a valid configuration: the values start-up
/// would otherwise parse again, typed, so building the server cannot fail on
/// configuration (and no later code has a "can only be a validation bug" error path).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `[[namespaces]]`, for the registry.
    pub namespaces: Vec<NamespaceSettings>,
    /// `[dns.rrl] exempt`.
    pub rrl_exempt: Vec<ipnet::IpNet>,
    pub health: HealthSettings,
    /// `[cloudmap] allowed_namespaces`.
    pub allowed_namespaces: Vec<NamePattern>,
    pub transfer: TransferSettings,
    /// `[[update.keys]]`.
    pub update_grants: Vec<UpdateGrant>,
    /// `[[zones]]`: each client subnet with its zone's name.
    pub zones: Vec<(ipnet::IpNet, std::sync::Arc<str>)>,
}

#[cfg(test)]
mod tests;
