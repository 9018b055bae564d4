//! A running registry whose snapshots a zone view follows: what unit tests of the
//! zone, its records and its journal build on, as muster wires them.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dns::PublishedZone;
use crate::registry::{Registry, RegistryHandle, Snapshot};

/// The registry's handle (namespace `internal`, from the default config unless given
/// one); it stops when the guard drops.
pub struct Running {
    pub handle: RegistryHandle,
    shutdown: CancellationToken,
}

impl Running {
    /// Starts a registry that publishes into `view`, on the current tokio runtime.
    pub fn new(view: &PublishedZone) -> Self {
        Self::with_config(view, Config::default())
    }

    /// The same, with the namespaces of `config`.
    pub fn with_config(view: &PublishedZone, config: Config) -> Self {
        let namespaces = config.settings().unwrap().namespaces;
        let mut registry = Registry::new(Snapshot::new(namespaces, []));
        registry.on_publish(view.publish_hook());
        let handle = registry.handle();
        let shutdown = CancellationToken::new();
        tokio::spawn(registry.run(shutdown.clone()));
        Self { handle, shutdown }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
