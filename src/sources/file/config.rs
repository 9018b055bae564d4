use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[[sources.file]]`: one watched file of static instances.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file; `.json` is read as JSON, anything else as TOML.
    pub path: PathBuf,
}
