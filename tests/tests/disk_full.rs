//! A full disk mid-run: writes, flushes or a checkpoint fail with a clear error
//! (ResourceExhausted, naming what), the last confirmed checkpoint stays intact, and once
//! space is freed the job resumes from it with exactly its state.
//!
//! Runs on a 40 MiB tmpfs mounted for the test (one per backend); where mounting is not
//! allowed (not root, or a container without the capability) it is skipped with a notice.
//! Memory and RocksDB fail with ResourceExhausted ("No space left on device"); the remote
//! backend, whose SlateDB retries what the store refuses, fails its checkpoint when the flush
//! does not finish within `flush_timeout_secs`.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use statekit_backend::memory::MemoryBackend;
use statekit_backend::{
    key_group_of, ErrorKind, InstanceConfig, LocalDirStorage, Result, Scope, StateBackend,
    StateDescriptor, StateId, StateKind,
};

const MAX_PAR: u16 = 16;

/// A tmpfs mounted at a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); the \
                 disk-full scenario did not run"
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a remote instance whose flush timed out may still hold files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn scope(state: StateId, key: &[u8]) -> Scope<'_> {
    Scope {
        state,
        key_group: key_group_of(key, MAX_PAR),
        key,
        namespace: b"",
    }
}

fn value(i: u32) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `n` incompressible 4 KiB values from `from` on; stops at the first error.
fn fill(b: &mut dyn StateBackend, state: StateId, from: u32, n: u32) -> Result<()> {
    for i in from..from + n {
        b.put(scope(state, &i.to_be_bytes()), b"", &value(i))?;
    }
    Ok(())
}

/// Runs the scenario for one backend, opened by `open` on the small disk.
fn scenario(
    disk: &SmallDisk,
    open: &dyn Fn(&Path, InstanceConfig) -> Box<dyn StateBackend>,
    expected: (ErrorKind, &str),
) {
    let checkpoints = disk.path().join("checkpoints");
    let config = InstanceConfig::single(MAX_PAR)
        .unwrap()
        .with_checkpoint_storage(Arc::new(LocalDirStorage::new(&checkpoints).unwrap()));
    let local: PathBuf = disk.path().join("local");
    let descriptor = StateDescriptor::new("values", StateKind::Value);

    let mut b = open(&local, config.clone());
    let state = b.register_state(&descriptor).unwrap();
    fill(b.as_mut(), state, 0, 1_000).unwrap();
    // The engine's record of the last confirmed checkpoint and how many values it holds.
    let mut confirmed = (b.checkpoint(1).unwrap(), 1_000u32);
    b.notify_checkpoint_complete(1).unwrap();

    // Fill the disk: a filler file takes most of what is left, then the job writes on.
    let filler = disk.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 24 << 20]);
    let mut next = 1_000;
    let failure = loop {
        if let Err(e) = fill(b.as_mut(), state, next, 500) {
            break e;
        }
        next += 500;
        match b.checkpoint(u64::from(next)) {
            Ok(handle) => confirmed = (handle, next),
            Err(e) => break e,
        }
        b.notify_checkpoint_complete(u64::from(next)).unwrap();
        assert!(next < 100_000, "a 40 MiB disk never filled up");
    };
    assert_eq!(failure.kind(), expected.0, "{failure}");
    let message = failure.to_string();
    assert!(message.contains(expected.1), "{message}");
    eprintln!(
        "{}: the disk filled after {next} values: {failure}",
        b.name()
    );
    drop(b);

    // Space freed: the job resumes from its last confirmed checkpoint, intact.
    std::fs::remove_file(&filler).unwrap();
    let (resume_from, covered) = confirmed;
    let mut resumed = open(&local, config);
    let state = resumed.register_state(&descriptor).unwrap();
    resumed.restore(std::slice::from_ref(&resume_from)).unwrap();
    for i in [0, covered / 2, covered - 1] {
        assert_eq!(
            resumed.get(scope(state, &i.to_be_bytes()), b"").unwrap(),
            Some(value(i)),
            "value {i} of checkpoint {}",
            resume_from.checkpoint_id
        );
    }
    eprintln!("resumed from checkpoint {}", resume_from.checkpoint_id);
    // And the job goes on writing and checkpointing.
    fill(resumed.as_mut(), state, covered, 100).unwrap();
    resumed.checkpoint(1_000_000).unwrap();
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_job_resumes() {
    // A fresh file system for each backend.
    let Some(disk) = SmallDisk::mount(40) else {
        return;
    };
    // A full disk is ResourceExhausted, and says so.
    let full = (ErrorKind::ResourceExhausted, "No space left on device");
    scenario(
        &disk,
        &|_, config| Box::new(MemoryBackend::open(config).unwrap()),
        full,
    );
    drop(disk);
    #[cfg(feature = "rocksdb")]
    {
        use statekit_backend::rocksdb::{
            MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings,
        };
        let disk = SmallDisk::mount(40).unwrap();
        let resources = RocksDbResources::new(MemoryBudget::new(32 << 20)).unwrap();
        scenario(
            &disk,
            &|local, config| {
                Box::new(
                    RocksDbBackend::open(config, RocksDbSettings::new(local, resources.clone()))
                        .unwrap(),
                )
            },
            full,
        );
    }
    #[cfg(feature = "remote")]
    {
        use statekit_backend::remote::{RemoteBackend, RemoteConfig, RemoteStore, Size};
        let disk = SmallDisk::mount(40).unwrap();
        // The object store is a directory on the small disk too. SlateDB retries writes the
        // store refuses; the flush timeout turns that wait into an error.
        let objects = disk.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let store = RemoteStore::connect(&RemoteConfig {
            block_cache: Size(16 << 20),
            flush_timeout_secs: 5,
            ..RemoteConfig::local(&objects)
        })
        .unwrap();
        // SlateDB keeps retrying what the store refuses: the checkpoint's flush times out.
        scenario(
            &disk,
            &|_, config| Box::new(RemoteBackend::open_in(config, &store).unwrap()),
            (
                ErrorKind::Unavailable,
                "refuses writes (full? unreachable?)",
            ),
        );
    }
}
