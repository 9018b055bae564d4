//! `[limits]`: ceilings on what clients of the APIs may create.

use serde::{Deserialize, Serialize};

/// `[limits]`: how much the APIs may register. Checked by the registry's writer, so
/// concurrent writes cannot pass one together; sources (files, ECS) are not limited.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Namespaces created through the Cloud Map API.
    pub namespaces: usize,
    /// Services in one namespace (a registration that would create one more is refused).
    pub services_per_namespace: usize,
    /// Instances in one service.
    pub instances_per_service: usize,
    /// Instances registered through the APIs and DNS UPDATE, in all.
    pub instances: usize,
    /// Bytes of attribute keys plus values of one instance or service (Cloud Map: 5,000).
    pub attribute_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            namespaces: 1_000,
            services_per_namespace: 10_000,
            instances_per_service: 10_000,
            instances: 1_000_000,
            attribute_bytes: 5_000,
        }
    }
}

impl LimitsConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("namespaces", self.namespaces),
            ("services_per_namespace", self.services_per_namespace),
            ("instances_per_service", self.instances_per_service),
            ("instances", self.instances),
            ("attribute_bytes", self.attribute_bytes),
        ] {
            if value == 0 {
                problems.push(format!("limits.{key}: must be at least 1"));
            }
        }
        // A change is logged as one record of at most store::MAX_ITEM bytes.
        if self.attribute_bytes > 100_000 {
            problems.push(format!(
                "limits.attribute_bytes: {} is above 100000",
                self.attribute_bytes
            ));
        }
        problems
    }
}
