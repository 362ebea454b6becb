//! What the tuner returns: a configuration and one reason per value it sets.

use serde::{Deserialize, Serialize};
use statekit_backend::rocksdb_config::RocksDbConfig;

/// A derived configuration with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// The options, as the RocksDB backend and `tuned.toml` take them.
    pub config: RocksDbConfig,
    /// One entry per option set, in the order the rules ran.
    pub reasons: Vec<Reason>,
    /// What the figures say the configuration cannot fix (a write rate beyond the disk, a
    /// budget below the state's fixed needs).
    pub warnings: Vec<String>,
}

/// Why an option has its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The option's path in `tuned.toml` (`db.max_background_jobs`,
    /// `states.clicks.cf.write_buffer_size`).
    pub key: String,
    /// The state it applies to; `None` for the whole database.
    pub state: Option<String>,
    /// The value, as written in `tuned.toml` (sizes also in binary units).
    pub value: String,
    /// The rule, with its source where it has one.
    pub rule: String,
    /// The workload and machine figures the rule used.
    pub figures: String,
}

impl Tuning {
    pub(crate) fn new() -> Self {
        Tuning {
            config: RocksDbConfig::default(),
            reasons: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records why `key` (of `state`, if any) is `value`.
    pub(crate) fn explain(
        &mut self,
        state: Option<&str>,
        key: &str,
        value: impl Into<String>,
        rule: impl Into<String>,
        figures: impl Into<String>,
    ) {
        let key = match state {
            Some(s) => format!("states.{s}.{key}"),
            None => key.to_string(),
        };
        self.reasons.push(Reason {
            key,
            state: state.map(str::to_string),
            value: value.into(),
            rule: rule.into(),
            figures: figures.into(),
        });
    }

    /// The reason for `key`, if the tuner set it.
    pub fn reason(&self, key: &str) -> Option<&Reason> {
        self.reasons.iter().find(|r| r.key == key)
    }
}

/// A byte count as bytes and in binary units (`16777216 (16.0 MiB)`).
pub(crate) fn bytes(n: u64) -> String {
    format!("{n} ({})", bytesize::ByteSize(n).display().iec())
}

/// A rate of bytes per second in binary units.
pub(crate) fn rate(bytes_per_sec: f64) -> String {
    format!(
        "{}/s",
        bytesize::ByteSize(bytes_per_sec.max(0.0) as u64)
            .display()
            .iec()
    )
}
