//! Local checkpoint storage makes what it writes durable before anything can reference it:
//! every file is fsynced before it is renamed into place, the directory after the rename,
//! and every directory it creates in its parent. Without the directory fsyncs a power loss
//! could leave a manifest that points at files whose names were never persisted.
//!
//! Observed from outside with `strace` (installed by `scripts/setup.sh`; skipped with a notice
//! where it is missing): this test runs its own binary under strace, on the ignored helper
//! below, and reads the system calls.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use statekit_backend::{CheckpointStorage, LocalDirStorage};

const DIR_VAR: &str = "STATEKIT_FSYNC_TEST_DIR";

/// What is written: a manifest (`put`) and a data file (`put_file`), each in directories the
/// storage creates.
const MANIFEST: &str = "chk-000000000001/memory-kg00000-00015/MANIFEST";
const DATA: &str = "shared/rocksdb-kg00000-00015-abc/000012.sst";

#[test]
#[ignore = "run by files_and_directories_are_fsynced under strace"]
fn helper_writes_checkpoint_files() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let storage = LocalDirStorage::new(dir.join("root")).unwrap();
    storage.put(MANIFEST, b"manifest").unwrap();
    let local = dir.join("local.sst");
    std::fs::write(&local, vec![7u8; 4096]).unwrap();
    storage.put_file(DATA, &local).unwrap();
}

/// The quoted paths of a strace line, in order.
fn quoted(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

/// The path strace's `-y` shows for the fd of an fsync line (`fsync(3</path>)`).
fn fsynced(line: &str) -> Option<&str> {
    let rest = line.split("fsync(").nth(1)?;
    let start = rest.find('<')? + 1;
    let end = rest.find('>')?;
    Some(&rest[start..end])
}

#[test]
fn files_and_directories_are_fsynced() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.log");
    let status = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fsync,rename,renameat,renameat2,mkdir,mkdirat",
        ])
        .arg("-o")
        .arg(&log)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "helper_writes_checkpoint_files", "--ignored"])
        .env(DIR_VAR, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let trace = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let root = std::fs::canonicalize(dir.path().join("root")).unwrap();
    let fsync_of = |path: &Path, after: usize, before: usize| {
        lines[after..before]
            .iter()
            .any(|l| fsynced(l).is_some_and(|p| Path::new(p) == path))
    };
    for target in [MANIFEST, DATA] {
        let target_path = root.join(target);
        let renamed = lines
            .iter()
            .position(|l| {
                l.contains("rename") && quoted(l).last().map(Path::new) == Some(&target_path)
            })
            .unwrap_or_else(|| panic!("no rename onto {target}:\n{trace}"));
        let tmp = PathBuf::from(quoted(lines[renamed])[0]);
        assert!(
            fsync_of(&tmp, 0, renamed),
            "{target}: its temporary file is not fsynced before the rename:\n{trace}"
        );
        let parent = target_path.parent().unwrap();
        assert!(
            fsync_of(parent, renamed, lines.len()),
            "{target}: its directory is not fsynced after the rename:\n{trace}"
        );
        // Every directory created for it is made durable in its parent.
        let mut created = parent;
        while created != root {
            let made = lines
                .iter()
                .position(|l| {
                    l.contains("mkdir") && quoted(l).first().map(Path::new) == Some(created)
                })
                .unwrap_or_else(|| panic!("{} was not created:\n{trace}", created.display()));
            let up = created.parent().unwrap();
            assert!(
                fsync_of(up, made, lines.len()),
                "{target}: {} is not fsynced after creating {}:\n{trace}",
                up.display(),
                created.display()
            );
            created = up;
        }
    }
}
