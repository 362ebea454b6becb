//! What every backend instance is configured with, whatever its engine.

use std::sync::Arc;

use crate::backend::Ttl;
use crate::checkpoint::CheckpointStorage;
use crate::clock::{system_clock, SharedClock};
use crate::error::{Error, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange, MAX_MAX_PARALLELISM};

/// The engine-independent configuration of one backend instance.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// Number of key groups of the job.
    pub max_parallelism: u16,
    /// The key groups this instance owns.
    pub key_groups: KeyGroupRange,
    /// Where checkpoints go; `None` makes `checkpoint` an error.
    pub checkpoint_storage: Option<Arc<dyn CheckpointStorage>>,
    /// Processing time for TTL.
    pub clock: SharedClock,
    /// How many confirmed checkpoints this instance keeps; older ones are deleted.
    pub retained_checkpoints: usize,
    /// Who the checkpoints belong to, for example `"job-7f3a/interval-join"`: checkpoints go
    /// under this path in the checkpoint storage. Two operators (or jobs) with the same
    /// parallelism sharing one storage need different ids, or their checkpoints of the same
    /// id land in the same place. Segments of ASCII letters, digits, `.`, `_` and `-`,
    /// separated by `/`.
    pub operator_id: Option<String>,
}

impl InstanceConfig {
    /// An instance owning all key groups of `max_parallelism`, without checkpoint storage.
    ///
    /// # Errors
    /// `InvalidArgument` for a max parallelism of 0 or above the supported maximum.
    pub fn single(max_parallelism: u16) -> Result<Self> {
        Ok(InstanceConfig {
            max_parallelism,
            key_groups: KeyGroupRange::all(u32::from(max_parallelism))?,
            checkpoint_storage: None,
            clock: system_clock(),
            retained_checkpoints: 3,
            operator_id: None,
        })
    }

    /// Sets the owned key groups.
    pub fn with_key_groups(mut self, key_groups: KeyGroupRange) -> Self {
        self.key_groups = key_groups;
        self
    }

    /// Sets the checkpoint storage.
    pub fn with_checkpoint_storage(mut self, storage: Arc<dyn CheckpointStorage>) -> Self {
        self.checkpoint_storage = Some(storage);
        self
    }

    /// Sets the operator id checkpoints are stored under (see [`InstanceConfig::operator_id`]).
    pub fn with_operator_id(mut self, operator_id: impl Into<String>) -> Self {
        self.operator_id = Some(operator_id.into());
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks that the owned range fits the max parallelism.
    ///
    /// # Errors
    /// `InvalidArgument` naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.max_parallelism == 0 || u32::from(self.max_parallelism) > MAX_MAX_PARALLELISM {
            return Err(Error::invalid(format!(
                "max_parallelism {} is outside 1..={MAX_MAX_PARALLELISM}",
                self.max_parallelism
            )));
        }
        if self.key_groups.start > self.key_groups.end {
            return Err(Error::invalid(format!(
                "key group range {}..={} is empty (start > end)",
                self.key_groups.start, self.key_groups.end
            )));
        }
        if self.key_groups.end >= self.max_parallelism {
            return Err(Error::invalid(format!(
                "key group range {} exceeds max_parallelism {}",
                self.key_groups, self.max_parallelism
            )));
        }
        if self.retained_checkpoints == 0 {
            return Err(Error::invalid("retained_checkpoints must be at least 1"));
        }
        if let Some(id) = &self.operator_id {
            let valid_segment = |s: &str| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            };
            if !id.split('/').all(valid_segment) {
                return Err(Error::invalid(format!(
                    "operator id '{id}' is not a relative path of segments of ASCII letters, \
                     digits, '.', '_' and '-'"
                )));
            }
        }
        Ok(())
    }

    /// Processing time now, in milliseconds, from the instance's clock.
    pub fn now_millis(&self) -> u64 {
        self.clock.now_millis()
    }

    /// When an entry written now with `ttl` expires (`None`: never).
    pub fn expiry(&self, ttl: Option<Ttl>) -> Option<u64> {
        ttl.map(|ttl| self.now_millis().saturating_add(ttl.millis))
    }

    /// The position of owned key group `key_group` in per-group tables (0 for the first
    /// owned group). The caller has checked ownership.
    pub fn group_index(&self, key_group: KeyGroup) -> usize {
        usize::from(key_group - self.key_groups.start)
    }

    /// The checkpoint storage, or an error saying none is configured.
    ///
    /// # Errors
    /// `InvalidArgument` if there is none.
    pub fn storage(&self) -> Result<&Arc<dyn CheckpointStorage>> {
        self.checkpoint_storage
            .as_ref()
            .ok_or_else(|| Error::invalid("no checkpoint storage is configured for this backend"))
    }
}
