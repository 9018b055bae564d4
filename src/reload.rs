//! Configuration reloads on SIGHUP.
//!
//! `muster serve` re-reads its configuration file on SIGHUP; when the new file is valid
//! it is published through a watch channel, and the parts that can change while running
//! follow it: TLS certificates, API credentials, file sources (which reread their files).
//! Everything else (listeners, namespaces, ECS, limits) takes effect at the next start,
//! and a reload that changes such a key says so in the log. An invalid file changes
//! nothing.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};

/// The configuration as last loaded, for the parts that follow reloads.
pub type ConfigUpdates = watch::Receiver<Arc<Config>>;

/// Publishes reloaded configurations.
#[derive(Clone)]
pub struct Reloader {
    sender: Arc<watch::Sender<Arc<Config>>>,
}

impl Reloader {
    /// A reloader whose subscribers start from `config`.
    pub fn new(config: Config) -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(Arc::new(config))),
        }
    }

    /// A receiver that sees every later reload.
    pub fn subscribe(&self) -> ConfigUpdates {
        self.sender.subscribe()
    }

    /// Validates `config` and, if it is valid, publishes it; logs the keys that changed
    /// but need a restart.
    pub fn reload(&self, config: Config) -> Result<(), ConfigError> {
        config.settings()?;
        let old = self.sender.borrow().clone();
        let restart: Vec<&str> = needs_restart(&old, &config);
        if !restart.is_empty() {
            tracing::warn!(
                keys = restart.join(", "),
                "configuration reloaded; these changes take effect at the next start"
            );
        }
        self.sender.send_replace(Arc::new(config));
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// The tables that differ between `old` and `new` and are read only at start.
fn needs_restart<'a>(old: &Config, new: &Config) -> Vec<&'a str> {
    let tables: [(&str, bool); 11] = [
        ("data_dir", old.data_dir != new.data_dir),
        ("dns", old.dns != new.dns),
        (
            "http.listen, http.tls_cert (on or off)",
            old.http.listen != new.http.listen || old.http.tls_enabled() != new.http.tls_enabled(),
        ),
        ("ops", old.ops != new.ops),
        ("limits", old.limits != new.limits),
        ("health", old.health != new.health),
        ("namespaces", old.namespaces != new.namespaces),
        ("sources", old.sources != new.sources),
        ("cloudmap", old.cloudmap != new.cloudmap),
        ("forward", old.forward != new.forward),
        ("transfer", old.transfer != new.transfer),
    ];
    tables
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}
