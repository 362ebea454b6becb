//! The advisor: reads what a run of a configuration showed (stalls, L0 pile-up, cache hit
//! rates by block type, Bloom filter usefulness, write amplification) and proposes changes,
//! each with its reason. The harness tries each by replay and keeps it only when it wins by
//! more than the noise; this module only proposes (a pure function, like the derivation).

use serde::{Deserialize, Serialize};
use statekit_backend::rocksdb_config::{RocksDbConfig, DEFAULT_WRITE_BUFFER_RATIO};

use crate::machine::Machine;
use crate::shape::WorkloadShape;

/// What the runs of one configuration showed (figures of one run, or the mean of repeats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds the run took.
    pub seconds: f64,
    /// Microseconds writes were stalled.
    pub stall_micros: u64,
    /// L0 files at the end of the input, over all states.
    pub l0_files: u64,
    /// Bytes compaction still owed at the end.
    pub pending_compaction_bytes: u64,
    /// Data-block cache hits and misses.
    pub data_hits: u64,
    /// See `data_hits`.
    pub data_misses: u64,
    /// Index-block cache hits and misses.
    pub index_hits: u64,
    /// See `index_hits`.
    pub index_misses: u64,
    /// Bloom filter checks that ruled a file out.
    pub bloom_useful: u64,
    /// Bloom filter checks that said "maybe".
    pub bloom_positive: u64,
    /// Of those, the key was there.
    pub bloom_true_positive: u64,
    /// Bytes written to disk per byte written by the user.
    pub write_amplification: Option<f64>,
}

impl Observation {
    fn stall_share(&self) -> f64 {
        self.stall_micros as f64 / (self.seconds * 1e6).max(1.0)
    }

    fn data_hit_rate(&self) -> Option<f64> {
        let all = self.data_hits + self.data_misses;
        (all > 0).then(|| self.data_hits as f64 / all as f64)
    }

    /// False positives among the filter checks of absent keys.
    fn bloom_false_positive_rate(&self) -> Option<f64> {
        let false_positives = self.bloom_positive.saturating_sub(self.bloom_true_positive);
        let negatives = self.bloom_useful + false_positives;
        (negatives > 1000).then(|| false_positives as f64 / negatives as f64)
    }
}

/// A change to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// What changes, as a name the report shows (and the advisor uses to not propose it
    /// twice): `backend.write_buffer_ratio`, `states.<s>.cf.max_bytes_for_level_base`, ...
    pub key: String,
    /// The new value(s).
    pub value: String,
    /// Why, with the rule's source.
    pub reason: String,
    /// The figures that triggered it.
    pub figures: String,
    /// The configuration with the change.
    pub config: RocksDbConfig,
}

/// Changes to try on `config` after `observed`, most promising first, leaving out keys in
/// `tried`.
pub fn advise(
    config: &RocksDbConfig,
    shape: &WorkloadShape,
    machine: &Machine,
    observed: &Observation,
    tried: &[String],
) -> Vec<Proposal> {
    let mut out = Vec::new();
    let mut propose = |key: String, value: String, reason: &str, figures: String, c| {
        if !tried.contains(&key) {
            out.push(Proposal {
                key,
                value,
                reason: reason.to_string(),
                figures,
                config: c,
            });
        }
    };
    // The states that take most of the writes: where memtable and level settings matter.
    let total: f64 = shape.write_bytes_per_sec().max(1.0);
    let busy: Vec<&str> = shape
        .states
        .iter()
        .filter(|s| s.write_bytes_per_sec() / total >= 0.2)
        .map(|s| s.name.as_str())
        .collect();
    let stalls = observed.stall_share();
    let figures_stalls = format!(
        "writes stalled {:.1}% of the run, {} L0 files at the end, {} of pending compaction",
        stalls * 100.0,
        observed.l0_files,
        bytesize::ByteSize(observed.pending_compaction_bytes)
            .display()
            .iec()
    );
    if stalls > 0.01 {
        let jobs = config.db.max_background_jobs.unwrap_or(2);
        if (jobs as u32) < machine.cores {
            let mut c = config.clone();
            c.db.max_background_jobs = Some(jobs + 1);
            propose(
                "db.max_background_jobs".into(),
                (jobs + 1).to_string(),
                "writes stall while compactions queue: one more background job (RocksDB \
                 Advisor: stalls from L0 or pending compaction -> more compaction threads)",
                figures_stalls.clone(),
                c,
            );
        }
        for state in &busy {
            let mut c = config.clone();
            let cf = &mut c.states.entry((*state).to_string()).or_default().cf;
            // RocksDB's defaults where the config leaves them.
            let current = config.for_state(state).0;
            let cur_slow = current.level0_slowdown_writes_trigger.unwrap_or(20);
            let cur_stop = current.level0_stop_writes_trigger.unwrap_or(36);
            cf.level0_slowdown_writes_trigger = Some(cur_slow * 2);
            cf.level0_stop_writes_trigger = Some(cur_stop * 2);
            propose(
                format!("states.{state}.cf.level0_slowdown_writes_trigger"),
                format!(
                    "slowdown {} and stop {} L0 files",
                    cur_slow * 2,
                    cur_stop * 2
                ),
                "writes stall on L0 while compaction catches up: let L0 grow further before \
                 slowing writes (RocksDB Advisor: L0 stalls -> higher slowdown trigger)",
                figures_stalls.clone(),
                c,
            );
        }
    }
    if let Some(rate) = observed.data_hit_rate() {
        let ratio = config
            .backend
            .write_buffer_ratio
            .unwrap_or(DEFAULT_WRITE_BUFFER_RATIO);
        let figures = format!(
            "data-block cache hit rate {:.1}%, write buffer ratio {ratio}",
            rate * 100.0
        );
        if rate < 0.8 && ratio > 0.25 && stalls <= 0.01 {
            let mut c = config.clone();
            let new = ((ratio - 0.15) * 100.0).round() / 100.0;
            c.backend.write_buffer_ratio = Some(new.max(0.2));
            propose(
                "backend.write_buffer_ratio".into(),
                format!("{}", new.max(0.2)),
                "reads miss the block cache and writes do not stall: give the cache more of \
                 the budget (Vivo's field guidance: a lower write-buffer ratio for read-heavy \
                 jobs)",
                figures,
                c,
            );
        } else if rate >= 0.95 && ratio < 0.7 {
            let mut c = config.clone();
            let new = ((ratio + 0.15) * 100.0).round() / 100.0;
            c.backend.write_buffer_ratio = Some(new.min(0.75));
            propose(
                "backend.write_buffer_ratio".into(),
                format!("{}", new.min(0.75)),
                "the cache answers almost every read: memtables may take more of the budget, \
                 for larger flushes and less compaction",
                figures,
                c,
            );
        }
    }
    if let Some(fp) = observed.bloom_false_positive_rate() {
        if fp > 0.02 {
            let mut c = config.clone();
            let mut changed = Vec::new();
            for s in &shape.states {
                let (_, table) = config.for_state(&s.name);
                if let Some(bits) = table.bloom_filter_bits_per_key {
                    let new = (bits + 2.0).min(20.0);
                    c.states
                        .entry(s.name.clone())
                        .or_default()
                        .table
                        .bloom_filter_bits_per_key = Some(new);
                    changed.push(format!("{}: {new}", s.name));
                }
            }
            if !changed.is_empty() {
                propose(
                    "table.bloom_filter_bits_per_key (+2)".into(),
                    changed.join(", "),
                    "Bloom filters let through more than 2% of absent keys: two more bits per \
                     key (RocksDB Advisor: filter useful ratio low -> +2 bits)",
                    format!("false positives {:.1}% of absent-key checks", fp * 100.0),
                    c,
                );
            }
        }
    }
    if let Some(wa) = observed.write_amplification {
        let figures = format!("write amplification {wa:.1}");
        if wa > 4.0 {
            for state in &busy {
                let cf = config.for_state(state).0;
                if let Some(l1) = cf.max_bytes_for_level_base {
                    let mut c = config.clone();
                    let s = c.states.entry((*state).to_string()).or_default();
                    s.cf.max_bytes_for_level_base = Some(l1 * 2);
                    if let Some(t) = cf.target_file_size_base {
                        s.cf.target_file_size_base = Some(t * 2);
                    }
                    propose(
                        format!("states.{state}.cf.max_bytes_for_level_base"),
                        format!("{} MiB (target files doubled too)", (l1 * 2) >> 20),
                        "compaction rewrites each byte many times: a larger L1 keeps more of a \
                         churning state above the deeper levels, where deletions meet what \
                         they delete sooner",
                        figures.clone(),
                        c,
                    );
                }
                if cf.min_write_buffer_number_to_merge.unwrap_or(1) < 2 {
                    let mut c = config.clone();
                    c.states
                        .entry((*state).to_string())
                        .or_default()
                        .cf
                        .min_write_buffer_number_to_merge = Some(2);
                    propose(
                        format!("states.{state}.cf.min_write_buffer_number_to_merge"),
                        "2".into(),
                        "compaction rewrites each byte many times: merging two memtables per \
                         flush halves the L0 files and drops entries deleted while in memory",
                        figures.clone(),
                        c,
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use statekit_backend::StateKind;

    use super::*;
    use crate::{derive, Disk, DiskKind, OpRates, StateShape};

    fn setup() -> (WorkloadShape, Machine, RocksDbConfig) {
        let state = StateShape {
            rates: OpRates {
                puts: 10_000.0,
                gets: 10_000.0,
                deletes: 9_000.0,
                ..OpRates::default()
            },
            get_miss_ratio: 0.5,
            key_bytes: 20.0,
            value_bytes: 400.0,
            value_bytes_p99: 600.0,
            distinct_keys: 1_000_000,
            live_bytes: 1 << 30,
            ..StateShape::new("buffer", StateKind::Map)
        };
        let shape = WorkloadShape {
            source: "test".into(),
            seconds: 100.0,
            states: vec![state],
        };
        let machine = Machine {
            cores: 4,
            memory_budget: 128 << 20,
            disk: Disk::declared(DiskKind::Ssd),
            direct_io: true,
        };
        let config = derive(&shape, &machine).unwrap().config;
        (shape, machine, config)
    }

    fn keys(p: &[Proposal]) -> Vec<&str> {
        p.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn a_quiet_run_gets_no_proposals() {
        let (shape, machine, config) = setup();
        let calm = Observation {
            seconds: 100.0,
            data_hits: 90,
            data_misses: 10,
            write_amplification: Some(2.0),
            ..Observation::default()
        };
        assert!(advise(&config, &shape, &machine, &calm, &[]).is_empty());
    }

    #[test]
    fn each_symptom_moves_its_setting_and_tried_keys_are_not_repeated() {
        let (shape, machine, config) = setup();
        let stalled = Observation {
            seconds: 100.0,
            stall_micros: 10_000_000,
            l0_files: 30,
            ..Observation::default()
        };
        let p = advise(&config, &shape, &machine, &stalled, &[]);
        assert_eq!(
            keys(&p),
            [
                "db.max_background_jobs",
                "states.buffer.cf.level0_slowdown_writes_trigger"
            ]
        );
        assert_eq!(
            p[0].config.db.max_background_jobs,
            Some(config.db.max_background_jobs.unwrap() + 1)
        );
        assert_eq!(
            p[1].config
                .for_state("buffer")
                .0
                .level0_slowdown_writes_trigger,
            Some(40)
        );
        let tried = vec!["db.max_background_jobs".to_string()];
        assert_eq!(advise(&config, &shape, &machine, &stalled, &tried).len(), 1);

        let missing = Observation {
            seconds: 100.0,
            data_hits: 10,
            data_misses: 90,
            ..Observation::default()
        };
        let p = advise(&config, &shape, &machine, &missing, &[]);
        assert_eq!(keys(&p), ["backend.write_buffer_ratio"]);
        let before = config.backend.write_buffer_ratio.unwrap();
        assert!(p[0].config.backend.write_buffer_ratio.unwrap() < before);

        let leaky = Observation {
            seconds: 100.0,
            bloom_useful: 9_000,
            bloom_positive: 1_500,
            bloom_true_positive: 500,
            ..Observation::default()
        };
        let p = advise(&config, &shape, &machine, &leaky, &[]);
        let bits = |c: &RocksDbConfig| c.for_state("buffer").1.bloom_filter_bits_per_key.unwrap();
        assert_eq!(bits(&p[0].config), bits(&config) + 2.0);

        let churning = Observation {
            seconds: 100.0,
            write_amplification: Some(9.0),
            ..Observation::default()
        };
        let p = advise(&config, &shape, &machine, &churning, &[]);
        let l1 = |c: &RocksDbConfig| c.for_state("buffer").0.max_bytes_for_level_base.unwrap();
        assert_eq!(l1(&p[0].config), 2 * l1(&config));
        for proposal in &p {
            proposal.config.validate().unwrap();
            assert!(!proposal.reason.is_empty() && !proposal.figures.is_empty());
        }
    }
}
