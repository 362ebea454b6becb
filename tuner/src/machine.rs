//! The machine and the memory budget the configuration is for.

use serde::{Deserialize, Serialize};

/// What the tuner knows of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU cores the job may use.
    pub cores: u32,
    /// Memory for state: the budget block cache and memtables share.
    pub memory_budget: u64,
    /// The disk the state lives on.
    pub disk: Disk,
    /// Reads, flushes and compactions bypass the page cache (the budget is real).
    pub direct_io: bool,
}

/// The disk: its kind, and measured bandwidth when known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Solid-state or spinning.
    pub kind: DiskKind,
    /// Sequential write bandwidth, bytes per second, if measured.
    pub seq_write_bytes_per_sec: Option<u64>,
    /// Sequential read bandwidth, bytes per second, if measured.
    pub seq_read_bytes_per_sec: Option<u64>,
    /// Random 4 KiB reads per second, if measured.
    pub random_read_iops: Option<u64>,
}

/// Kinds of disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    /// Flash: random reads are cheap.
    Ssd,
    /// Spinning: random reads cost a seek.
    Hdd,
}

impl Disk {
    /// A declared disk of `kind`, nothing measured.
    pub fn declared(kind: DiskKind) -> Self {
        Disk {
            kind,
            seq_write_bytes_per_sec: None,
            seq_read_bytes_per_sec: None,
            random_read_iops: None,
        }
    }
}
