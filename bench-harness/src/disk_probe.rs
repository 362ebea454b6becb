//! Measures the disk under a directory for the tuner (`statekit tune --disk measure`):
//! sequential write and read bandwidth and random 4 KiB reads per second, all with O_DIRECT so
//! that the page cache (24 GiB on a machine like ours) does not answer instead of the disk.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use statekit_backend::{Error, Result};
use statekit_tuner::{Disk, DiskKind};

const ALIGN: usize = 4096;
const CHUNK: usize = 1 << 20;
/// Random reads per second above which a disk is solid-state (a spinning disk does ~100-200).
const SSD_IOPS: u64 = 1_000;

/// Writes and reads a `size`-byte file in `dir` (removed afterwards) and times it.
///
/// # Errors
/// I/O errors naming the file; a file system that refuses O_DIRECT (tmpfs) is named too.
pub fn measure(dir: &Path, size: u64) -> Result<Disk> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let path = dir.join(".statekit-disk-probe");
    let result = probe(&path, size.max(CHUNK as u64) / CHUNK as u64 * CHUNK as u64);
    let _ = std::fs::remove_file(&path);
    result
}

fn probe(path: &Path, size: u64) -> Result<Disk> {
    let io = |e| Error::io(path.display(), e);
    let mut backing = vec![0u8; CHUNK + ALIGN];
    let offset = backing.as_ptr().align_offset(ALIGN);
    let buf = &mut backing[offset..offset + CHUNK];
    rand::rngs::StdRng::seed_from_u64(7).fill(&mut buf[..]);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| Error::io(format!("{} (opened with O_DIRECT)", path.display()), e))?;
    let start = Instant::now();
    for _ in 0..size / CHUNK as u64 {
        file.write_all(buf).map_err(io)?;
    }
    file.sync_data().map_err(io)?;
    let write = per_sec(size, start.elapsed());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let start = Instant::now();
    for _ in 0..size / CHUNK as u64 {
        file.read_exact(buf).map_err(io)?;
    }
    let read = per_sec(size, start.elapsed());
    let blocks = size / ALIGN as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let start = Instant::now();
    let mut reads = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        let block = rng.random_range(0..blocks);
        file.seek(SeekFrom::Start(block * ALIGN as u64))
            .map_err(io)?;
        file.read_exact(&mut buf[..ALIGN]).map_err(io)?;
        reads += 1;
    }
    let iops = per_sec(reads, start.elapsed());
    Ok(Disk {
        kind: if iops >= SSD_IOPS {
            DiskKind::Ssd
        } else {
            DiskKind::Hdd
        },
        seq_write_bytes_per_sec: Some(write),
        seq_read_bytes_per_sec: Some(read),
        random_read_iops: Some(iops),
    })
}

fn per_sec(n: u64, elapsed: Duration) -> u64 {
    (n as f64 / elapsed.as_secs_f64().max(1e-6)) as u64
}
