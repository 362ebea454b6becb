use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::*;
use crate::checkpoint::{CheckpointHandle, CheckpointStorage, LocalDirStorage};
use crate::clock::ManualClock;
use crate::memory::MemoryBackend;
use crate::{key_group_of, Checkpointing};

const MAX_PAR: u16 = 16;

fn resources() -> Arc<RocksDbResources> {
    static SHARED: OnceLock<Arc<RocksDbResources>> = OnceLock::new();
    SHARED
        .get_or_init(|| RocksDbResources::new(MemoryBudget::new(64 << 20)).unwrap())
        .clone()
}

struct Env {
    dir: tempfile::TempDir,
    storage: Arc<LocalDirStorage>,
    clock: ManualClock,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(LocalDirStorage::new(dir.path().join("checkpoints")).unwrap());
        Env {
            dir,
            storage,
            clock: ManualClock::new(1_000),
        }
    }

    fn config(&self) -> InstanceConfig {
        InstanceConfig::single(MAX_PAR)
            .unwrap()
            .with_checkpoint_storage(self.storage.clone())
            .with_clock(Arc::new(self.clock.clone()))
    }

    fn open(&self) -> RocksDbBackend {
        self.open_with(RocksDbSettings::new(
            self.dir.path().join("local"),
            resources(),
        ))
    }

    fn open_with(&self, settings: RocksDbSettings) -> RocksDbBackend {
        RocksDbBackend::open(self.config(), settings).unwrap()
    }

    /// A backend with `config`, in the directory `open` uses.
    fn open_configured(&self, config: RocksDbConfig) -> RocksDbBackend {
        self.open_with(
            RocksDbSettings::new(self.dir.path().join("local"), resources()).with_config(config),
        )
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

/// 100 incompressible bytes: compression must not make the data files smaller than the
/// DB's metadata files, or the byte counts would measure the wrong thing.
fn noise(seed: u32) -> Vec<u8> {
    let mut x = u64::from(seed) * 0x9E37_79B9_7F4A_7C15 + 1;
    (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn shared_files(storage: &LocalDirStorage) -> Vec<String> {
    storage.list("shared").unwrap()
}

/// Point deletes RocksDB holds in a state's active memtable.
fn memtable_point_deletes(b: &RocksDbBackend, state: StateId) -> u64 {
    b.db()
        .property_int_value_cf(b.cf(state).unwrap(), "rocksdb.num-deletes-active-mem-table")
        .unwrap()
        .unwrap()
}

/// Range tombstones in a state's SST files.
fn file_range_tombstones(b: &RocksDbBackend, state: StateId) -> String {
    let props = b
        .db()
        .property_value_cf(b.cf(state).unwrap(), "rocksdb.aggregated-table-properties")
        .unwrap()
        .unwrap();
    props
        .split("; ")
        .find(|p| p.starts_with("# range deletions"))
        .unwrap_or_else(|| panic!("no range deletion count in {props}"))
        .to_string()
}

fn user_keys(b: &RocksDbBackend, scope: Scope<'_>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    b.scan(
        scope,
        UserKeyRange::all(),
        Direction::Forward,
        &mut |k, _| {
            keys.push(k.to_vec());
            Ok(Visit::Continue)
        },
    )
    .unwrap();
    keys
}

#[test]
fn small_range_deletes_become_point_deletes_large_ones_tombstones() {
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.backend.point_delete_limit = Some(3);
    let mut b = env.open_configured(config);
    let s = b
        .register_state(&StateDescriptor::new("rows", StateKind::Map))
        .unwrap();
    for i in 0..3u8 {
        b.put(scope(s, b"few"), &[i], b"v").unwrap();
    }
    for i in 0..10u8 {
        b.put(scope(s, b"many"), &[i], b"v").unwrap();
    }

    let mut batch = WriteBatch::new();
    batch
        .put(scope(s, b"few"), &[7], b"written before")
        .delete_range(scope(s, b"few"), None, None)
        .put(scope(s, b"few"), &[9], b"written after")
        .delete_range(scope(s, b"many"), Some(&[2]), Some(&[8]));
    b.write(batch).unwrap();

    // Three stored keys plus the batch's own put: point deletes, no tombstone.
    assert_eq!(user_keys(&b, scope(s, b"few")), vec![vec![9u8]]);
    assert_eq!(memtable_point_deletes(&b, s), 4);
    // Six stored keys are above the limit: one tombstone.
    assert_eq!(
        user_keys(&b, scope(s, b"many")),
        vec![vec![0u8], vec![1], vec![8], vec![9]]
    );

    // The single-call form takes the same path.
    let below_two = UserKeyRange::from_half_open(None, Some(&[2]));
    b.delete_range(scope(s, b"many"), below_two).unwrap();
    assert_eq!(memtable_point_deletes(&b, s), 6, "two keys: point deletes");
    assert_eq!(user_keys(&b, scope(s, b"many")), vec![vec![8u8], vec![9]]);
    // One tombstone in all, and the deletes hold in the files too.
    b.db().flush_cf(b.cf(s).unwrap()).unwrap();
    assert_eq!(file_range_tombstones(&b, s), "# range deletions=1");
    assert_eq!(user_keys(&b, scope(s, b"few")), vec![vec![9u8]]);
    assert_eq!(user_keys(&b, scope(s, b"many")), vec![vec![8u8], vec![9]]);
}

/// Range deletes interleaved with reads (what sliding-window-demand's operator once did on
/// every window fire): the active memtable never holds more than the default bound of
/// tombstones, since every read merges all of them. A preset keeps RocksDB's unbounded
/// memtable. Without the bound this loop alone took about a minute here (the tombstones
/// re-fragmented on every read).
#[test]
fn range_tombstones_in_a_memtable_are_bounded_by_default() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("panes", StateKind::Map))
        .unwrap();
    // RocksDB has no property for a memtable's range tombstones; its entries count them,
    // and each step below writes one put and one tombstone.
    let tombstones = |b: &RocksDbBackend| {
        b.db()
            .property_int_value_cf(b.cf(s).unwrap(), "rocksdb.num-entries-active-mem-table")
            .unwrap()
            .unwrap()
            / 2
    };
    let mut most = 0;
    for i in 0..3_000u32 {
        let key = i.to_be_bytes();
        b.put(scope(s, b"window"), &key, b"pane").unwrap();
        // Open lower bound, as a window fire removes every pane before its end.
        let upto = UserKeyRange::from_half_open(None, Some(&key));
        b.delete_range(scope(s, b"window"), upto).unwrap();
        assert_eq!(
            b.get(scope(s, b"window"), &key).unwrap().as_deref(),
            Some(&b"pane"[..])
        );
        most = most.max(tombstones(&b));
    }
    assert!(
        most <= u64::from(super::DEFAULT_MEMTABLE_MAX_RANGE_DELETIONS),
        "{most} range tombstones in one memtable"
    );
    assert_eq!(
        user_keys(&b, scope(s, b"window")),
        vec![2_999u32.to_be_bytes().to_vec()]
    );

    let preset = RocksDbConfig::preset(crate::rocksdb_config::Preset::FlinkDefault);
    assert_eq!(preset.cf.memtable_max_range_deletions, Some(0));
}

#[test]
fn second_checkpoint_uploads_only_new_files() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("events", StateKind::Map))
        .unwrap();
    for i in 0..20_000u32 {
        let key = (i % 500).to_be_bytes();
        b.put(scope(s, &key), &i.to_be_bytes(), &noise(i)).unwrap();
    }
    b.checkpoint(1).unwrap();
    let first = b.last_checkpoint_stats().unwrap().clone();
    assert_eq!(first.files_uploaded, first.files_total);
    let first_ssts = shared_files(&env.storage);
    assert!(!first_ssts.is_empty());

    // A small change: one new SST, everything else reused.
    for i in 0..50u32 {
        b.put(scope(s, b"new"), &i.to_be_bytes(), b"x").unwrap();
    }
    b.checkpoint(2).unwrap();
    let second = b.last_checkpoint_stats().unwrap().clone();
    assert_eq!(second.files_reused, first_ssts.len(), "{second:?}");
    let after = shared_files(&env.storage);
    assert_eq!(
        after.len(),
        first_ssts.len() + 1,
        "exactly one new SST uploaded"
    );
    assert!(first_ssts.iter().all(|f| after.contains(f)));
    // Only the new SST and the small DB metadata files went up.
    assert!(
        second.bytes_uploaded * 20 < first.bytes_uploaded,
        "{first:?} {second:?}"
    );
    assert!(second.bytes_total > first.bytes_total);

    // Restore of the second checkpoint sees both writes.
    let mut r = env.open();
    r.restore(&[b.checkpoints.kept().last().unwrap().clone()])
        .unwrap();
    let s2 = StateId::from_index(0);
    assert_eq!(
        r.get(scope(s2, b"new"), &49u32.to_be_bytes()).unwrap(),
        Some(b"x".to_vec())
    );
    assert_eq!(
        r.get(scope(s2, &7u32.to_be_bytes()), &7u32.to_be_bytes())
            .unwrap(),
        Some(noise(7))
    );
}

#[test]
fn retention_deletes_shared_files_nothing_references() {
    let env = Env::new();
    let mut config = env.config();
    config.retained_checkpoints = 1;
    let mut b = RocksDbBackend::open(
        config,
        RocksDbSettings::new(env.dir.path().join("l"), resources()),
    )
    .unwrap();
    let s = b
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    for round in 0..3u32 {
        for i in 0..1_000u32 {
            b.put(scope(s, &i.to_be_bytes()), b"", &round.to_be_bytes())
                .unwrap();
        }
        b.checkpoint(u64::from(round) + 1).unwrap();
        b.notify_checkpoint_complete(u64::from(round) + 1).unwrap();
    }
    // Three flushes, no compaction yet: all three SSTs are live and referenced.
    assert_eq!(shared_files(&env.storage).len(), 3);
    b.compact().unwrap();
    b.checkpoint(10).unwrap();
    b.notify_checkpoint_complete(10).unwrap();
    // After a full compaction one SST holds everything; the old ones are unreferenced.
    let left = shared_files(&env.storage);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        env.storage
            .list("")
            .unwrap()
            .iter()
            .filter(|p| p.ends_with("MANIFEST"))
            .count(),
        1
    );
}

#[test]
fn ttl_merge_is_decided_at_write_time_and_compaction_drops_expired() {
    let env = Env::new();
    let mut b = env.open();
    let ttl = std::time::Duration::from_millis(100);
    let s = b
        .register_state(&StateDescriptor::new("l", StateKind::List).with_ttl(ttl))
        .unwrap();
    let k = scope(s, b"k");
    b.merge(k, b"", b"a").unwrap();
    env.clock.advance(50);
    b.merge(k, b"", b"b").unwrap();
    assert_eq!(b.get(k, b"").unwrap(), Some(b"ab".to_vec()));
    env.clock.advance(200);
    assert_eq!(b.get(k, b"").unwrap(), None);
    // The value expired before this merge: it starts afresh, even though the merge
    // operator runs later (at read time or in a compaction).
    b.merge(k, b"", b"c").unwrap();
    env.clock.advance(10);
    b.compact().unwrap();
    assert_eq!(b.get(k, b"").unwrap(), Some(b"c".to_vec()));
    // Expired for longer than one TTL: the compaction filter removes it.
    env.clock.advance(1_000);
    b.compact().unwrap();
    assert_eq!(b.rocksdb_stats().unwrap().live_sst_bytes, 0);
}

#[test]
fn restores_a_full_snapshot_of_the_memory_backend() {
    let env = Env::new();
    let mut m = MemoryBackend::open(env.config()).unwrap();
    let s = m
        .register_state(&StateDescriptor::new("m", StateKind::Map))
        .unwrap();
    let q = m
        .register_state(&StateDescriptor::new("t", StateKind::Timers))
        .unwrap();
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        m.put(scope(s, &key), b"u", &key).unwrap();
        let timer = Timer {
            timestamp: i64::from(i),
            key_group: key_group_of(&key, MAX_PAR),
            key: key.to_vec(),
            namespace: Vec::new(),
        };
        m.register_timer(q, &timer).unwrap();
    }
    let handle = m.checkpoint(1).unwrap();
    let mut r = env.open();
    r.restore(&[handle]).unwrap();
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        assert_eq!(r.get(scope(s, &key), b"u").unwrap(), Some(key.to_vec()));
    }
    let popped = r.pop_due_timers(q, 49, 1000).unwrap();
    assert_eq!(popped.len(), 50);
    assert!(popped.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(r.next_timer(q).unwrap(), Some(50));
    // And a RocksDB checkpoint of it restores into the memory backend.
    let h2 = r.checkpoint(2).unwrap();
    assert_eq!(h2.format, ROCKSDB_FORMAT);
}

#[test]
fn stats_report_writes_and_memory() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    for i in 0..5_000u32 {
        b.put(scope(s, &i.to_be_bytes()), b"", &[1u8; 200]).unwrap();
    }
    let before = b.rocksdb_stats().unwrap();
    assert!(before.memtable_bytes > 0 && before.user_bytes_written >= 5_000 * 200);
    b.compact().unwrap();
    for i in 0..5_000u32 {
        assert!(b.get(scope(s, &i.to_be_bytes()), b"").unwrap().is_some());
    }
    let after = b.rocksdb_stats().unwrap();
    assert!(
        after.flush_bytes_written > 0 && after.live_sst_bytes > 0,
        "{after:?}"
    );
    assert!(after.write_amplification > 0.0);
    assert!(after.block_cache_hits + after.block_cache_misses > 0);
    let generic = b.stats().unwrap();
    assert_eq!(generic.disk_bytes, Some(after.sst_bytes));
    assert!(
        generic.meta_cache_hits.unwrap_or(0) + generic.meta_cache_misses.unwrap_or(0) > 0,
        "{generic:?}"
    );
}

#[test]
fn damaged_shared_file_fails_restore_and_keeps_state() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    b.put(scope(s, b"k"), b"", b"v").unwrap();
    let handle = b.checkpoint(1).unwrap();
    let sst = shared_files(&env.storage).pop().unwrap();
    let mut bytes = env.storage.get(&sst).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    env.storage.put(&sst, &bytes).unwrap();
    let mut r = env.open();
    let mine = r
        .register_state(&StateDescriptor::new("mine", StateKind::Value))
        .unwrap();
    r.put(scope(mine, b"x"), b"", b"y").unwrap();
    let err = r.restore(&[handle]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains(&sst), "{err}");
    assert_eq!(r.get(scope(mine, b"x"), b"").unwrap(), Some(b"y".to_vec()));
}

/// The text of the newest `OPTIONS-*` file RocksDB wrote into `dir`.
fn latest_options_file(dir: &Path) -> (PathBuf, String) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("OPTIONS-")
        })
        .collect();
    files.sort();
    let path = files.pop().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// Every option `wanted` sets has the value RocksDB wrote for column family `cf`.
fn assert_effective(text: &str, cf: &str, wanted: (CfOptions, TableOptions)) {
    let wrote = RocksDbConfig::from_rocksdb_options_str(text, "OPTIONS", cf).unwrap();
    let pairs = [
        (
            serde_json::to_value(&wanted.0).unwrap(),
            serde_json::to_value(&wrote.cf).unwrap(),
        ),
        (
            serde_json::to_value(&wanted.1).unwrap(),
            serde_json::to_value(&wrote.table).unwrap(),
        ),
    ];
    for (want, got) in pairs {
        for (key, value) in want.as_object().unwrap() {
            if value.is_null() || key == "compact_on_deletion" {
                continue;
            }
            if key == "bloom_filter_bits_per_key" && got[key].is_null() {
                // A filter made through the C API is written without its bits per key
                // (`filter_policy=bloomfilter`); one loaded from a file keeps them.
                let header = format!(
                    "[TableOptions/BlockBasedTable \"{}\"]",
                    cf.replace(':', "\\:")
                );
                let section = text.split(&header).nth(1).unwrap_or_default();
                let section = section.split("\n[").next().unwrap_or_default();
                assert!(
                    section.contains("filter_policy=bloomfilter"),
                    "{cf}: no Bloom filter in {section}"
                );
                continue;
            }
            assert_eq!(&got[key], value, "{cf}: {key}");
        }
    }
}

fn per_state_config() -> RocksDbConfig {
    let mut config = RocksDbConfig::preset(Preset::FlinkSpinningDiskOptimizedHighMem);
    config.cf.write_buffer_size = Some(4 << 20);
    config.states.insert(
        "hot".into(),
        StateOptions {
            cf: CfOptions {
                write_buffer_size: Some(2 << 20),
                level0_file_num_compaction_trigger: Some(2),
                memtable_max_range_deletions: Some(500),
                compression_per_level: Some(vec![
                    Compression::None,
                    Compression::None,
                    Compression::Lz4,
                    Compression::Zstd,
                ]),
                ..CfOptions::default()
            },
            table: TableOptions {
                block_size: Some(16 << 10),
                bloom_filter_bits_per_key: Some(14.0),
                ..TableOptions::default()
            },
        },
    );
    config
}

#[test]
fn an_options_file_with_per_state_sections_opens_rocksdb_with_those_options() {
    let config = per_state_config();
    let dir = tempfile::tempdir().unwrap();
    let mut options = config.clone();
    // The backend sets these from its memory model; a bare RocksDB keeps its own.
    options.table.index_type = Some(IndexType::BinarySearch);
    options.db.use_direct_reads = Some(false);
    let file_dir = dir.path().join("tuned");
    std::fs::create_dir_all(&file_dir).unwrap();
    options
        .write_options_file(&file_dir.join("OPTIONS-000001"))
        .unwrap();
    let (mut db_opts, cfs) = ::rocksdb::Options::load_latest(
        &file_dir,
        ::rocksdb::Env::new().unwrap(),
        false,
        ::rocksdb::Cache::new_lru_cache(1 << 20),
    )
    .unwrap();
    let names: Vec<String> = cfs.iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names, ["default", "state:hot"]);
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let db_dir = dir.path().join("db");
    let db = DB::open_cf_descriptors(&db_opts, &db_dir, cfs).unwrap();
    drop(db);
    let (_, text) = latest_options_file(&db_dir);
    assert_effective(
        &text,
        "default",
        (options.cf.clone(), options.table.clone()),
    );
    assert_effective(&text, "state:hot", options.for_state("hot"));
}

#[test]
fn the_backend_applies_each_states_options() {
    let env = Env::new();
    let config = per_state_config();
    let settings =
        RocksDbSettings::new(env.dir.path().join("o"), resources()).with_config(config.clone());
    let mut b = RocksDbBackend::open(env.config(), settings).unwrap();
    for name in ["hot", "cold"] {
        b.register_state(&StateDescriptor::new(name, StateKind::Map))
            .unwrap();
    }
    b.compact().unwrap();
    let (_, text) = latest_options_file(b.db_path());
    assert_effective(&text, "state:hot", config.for_state("hot"));
    assert_effective(&text, "state:cold", config.for_state("cold"));
    let hot = RocksDbConfig::from_rocksdb_options_str(&text, "OPTIONS", "state:hot").unwrap();
    let cold = RocksDbConfig::from_rocksdb_options_str(&text, "OPTIONS", "state:cold").unwrap();
    // Set on the open column family: RocksDB's C API has no setter for it.
    assert_eq!(hot.cf.memtable_max_range_deletions, Some(500));
    assert_eq!(cold.cf.memtable_max_range_deletions, Some(0));
    assert_eq!(cold.cf.write_buffer_size, Some(4 << 20));
}

#[test]
fn a_hash_memtable_is_applied_to_key_value_states_and_not_to_timer_queues() {
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.cf.hash_skiplist_buckets = Some(4096);
    config.db.allow_concurrent_memtable_write = Some(false);
    let settings = RocksDbSettings::new(env.dir.path().join("o"), resources()).with_config(config);
    let mut b = RocksDbBackend::open(env.config(), settings).unwrap();
    b.register_state(&StateDescriptor::new("s", StateKind::Map))
        .unwrap();
    b.register_state(&StateDescriptor::new("t", StateKind::Timers))
        .unwrap();
    b.compact().unwrap();
    let (path, text) = latest_options_file(b.db_path());
    let source = path.display().to_string();
    let map = RocksDbConfig::from_rocksdb_options_str(&text, &source, "state:s").unwrap();
    assert_eq!(map.cf.hash_skiplist_buckets, Some(4096), "{text}");
    let timers = RocksDbConfig::from_rocksdb_options_str(&text, &source, "state:t").unwrap();
    assert_eq!(timers.cf.hash_skiplist_buckets, None, "{text}");
    assert_eq!(map.db.allow_concurrent_memtable_write, Some(false));
}

#[test]
fn a_hash_memtable_without_one_writer_at_a_time_is_refused_before_rocksdb_opens() {
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.cf.hash_skiplist_buckets = Some(4096);
    let settings = RocksDbSettings::new(env.dir.path().join("o"), resources()).with_config(config);
    let msg = match RocksDbBackend::open(env.config(), settings) {
        Ok(_) => panic!("a hash memtable with concurrent memtable writes was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("db.allow_concurrent_memtable_write"), "{msg}");
}

/// What RocksDB wrote into its newest OPTIONS file for state `s` of a backend opened with
/// `config`, read back as a configuration.
fn options_rocksdb_wrote(env: &Env, config: RocksDbConfig) -> RocksDbConfig {
    let settings = RocksDbSettings::new(env.dir.path().join("o"), resources()).with_config(config);
    let mut b = RocksDbBackend::open(env.config(), settings).unwrap();
    b.register_state(&StateDescriptor::new("s", StateKind::Map))
        .unwrap();
    b.compact().unwrap();
    let (path, text) = latest_options_file(b.db_path());
    RocksDbConfig::from_rocksdb_options_str(&text, &path.display().to_string(), "state:s").unwrap()
}

/// `default.toml` with every `# key = value` line uncommented, except the options whose
/// default is "unset" (shown there with a sample value).
fn example_uncommented() -> RocksDbConfig {
    const NO_DEFAULT: [&str; 6] = [
        // RocksDB's files name its default skip list, which reads back as unset.
        "hash_skiplist_buckets",
        "bottommost_compression",
        "compression_per_level",
        // RocksDB's files name the filter without its bits.
        "bloom_filter_bits_per_key",
        "rate_limit_bytes_per_sec",
        // Derived from the budget; checked on its own.
        "compaction_readahead_size",
    ];
    let example = include_str!("../rocksdb_config/default.toml");
    assert_eq!(
        RocksDbConfig::parse(Path::new("default.toml"), example).unwrap(),
        RocksDbConfig::default(),
        "default.toml must set nothing"
    );
    let text: Vec<&str> = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                        && !NO_DEFAULT.contains(&k)
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect();
    RocksDbConfig::parse(Path::new("default.toml (uncommented)"), &text.join("\n")).unwrap()
}

#[test]
fn default_toml_shows_the_options_rocksdb_runs_with() {
    let env = Env::new();
    let wrote = options_rocksdb_wrote(&env, RocksDbConfig::default());
    let example = example_uncommented();
    // The backend's own section is not a RocksDB option, so not in OPTIONS files.
    assert_eq!(
        example.backend.point_delete_limit,
        Some(DEFAULT_POINT_DELETE_LIMIT)
    );
    // The tests' budget is 64 MiB: the readahead's floor.
    assert_eq!(
        wrote.db.compaction_readahead_size,
        Some(crate::rocksdb_config::budgeted_compaction_readahead(
            resources().budget().total_bytes
        ))
    );
    assert_eq!(wrote.db.compaction_readahead_size, Some(256 << 10));
    let wrote = RocksDbConfig {
        db: DbOptions {
            compaction_readahead_size: None,
            ..wrote.db
        },
        ..wrote
    };
    let example = RocksDbConfig {
        backend: BackendOptions::default(),
        ..example
    };
    // Field by field, so a failure names the option.
    let (a, b) = (
        serde_json::to_value(&example).unwrap(),
        serde_json::to_value(&wrote).unwrap(),
    );
    for section in ["db", "cf", "table"] {
        for (key, written) in b[section].as_object().unwrap() {
            assert_eq!(&a[section][key], written, "{section}.{key}");
        }
        for (key, shown) in a[section].as_object().unwrap() {
            assert!(
                shown.is_null() || b[section].get(key).is_some_and(|v| !v.is_null()),
                "{section}.{key} is shown but RocksDB wrote no value"
            );
        }
    }
}

#[test]
fn memtable_prefix_bloom_is_configurable_and_off_by_default() {
    let env = Env::new();
    let default = options_rocksdb_wrote(&env, RocksDbConfig::default());
    assert_eq!(default.cf.memtable_prefix_bloom_size_ratio, Some(0.0));
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.cf.memtable_prefix_bloom_size_ratio = Some(0.125);
    let set = options_rocksdb_wrote(&env, config);
    assert_eq!(set.cf.memtable_prefix_bloom_size_ratio, Some(0.125));
    let mut bad = RocksDbConfig::default();
    bad.cf.memtable_prefix_bloom_size_ratio = Some(0.3);
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("memtable_prefix_bloom_size_ratio"), "{err}");
}

#[test]
fn the_options_file_rocksdb_writes_reads_back_as_the_config() {
    let env = Env::new();
    let config = RocksDbConfig::preset(Preset::FlinkSpinningDiskOptimizedHighMem);
    let read = options_rocksdb_wrote(&env, config.clone());
    // Every option the preset sets is what RocksDB applied and wrote.
    let cf = &config.cf;
    assert_eq!(read.cf.write_buffer_size, cf.write_buffer_size);
    assert_eq!(read.cf.max_write_buffer_number, cf.max_write_buffer_number);
    assert_eq!(
        read.cf.min_write_buffer_number_to_merge,
        cf.min_write_buffer_number_to_merge
    );
    assert_eq!(read.cf.target_file_size_base, cf.target_file_size_base);
    assert_eq!(
        read.cf.max_bytes_for_level_base,
        cf.max_bytes_for_level_base
    );
    assert_eq!(read.cf.compaction_style, cf.compaction_style);
    assert_eq!(
        read.cf.level_compaction_dynamic_level_bytes,
        cf.level_compaction_dynamic_level_bytes
    );
    assert_eq!(read.db.max_background_jobs, config.db.max_background_jobs);
    assert_eq!(read.db.max_open_files, config.db.max_open_files);
    assert_eq!(read.db.use_fsync, config.db.use_fsync);
    assert_eq!(read.db.info_log_level, config.db.info_log_level);
    assert_eq!(
        read.db.stats_dump_period_sec,
        config.db.stats_dump_period_sec
    );
    assert_eq!(read.table.block_size, config.table.block_size);
    // And the managed-memory settings the backend adds.
    assert_eq!(read.table.cache_index_and_filter_blocks, Some(true));
    assert_eq!(
        read.table.pin_l0_filter_and_index_blocks_in_cache,
        Some(true)
    );
}

/// An append chain keeps a TTL value alive past its base's own expiry (each append refreshes
/// the whole value). A compaction that sees the base without the newer operands, here a
/// periodic compaction of the bottom file while the operands sit in L0, must keep the base:
/// dropping it returned "bcd" where the memory backend returns "abcd".
#[test]
fn ttl_compaction_keeps_a_base_that_newer_appends_extend() {
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.cf.periodic_compaction_seconds = Some(1);
    let mut b = env.open_configured(config);
    let s = b
        .register_state(
            &StateDescriptor::new("l", StateKind::List).with_ttl(Duration::from_millis(100)),
        )
        .unwrap();
    let k = scope(s, b"k");
    b.put(k, b"", b"a").unwrap();
    b.compact().unwrap();
    let base_file = bottom_files(&b);
    assert_eq!(base_file.len(), 1, "the base sits in one bottom-level file");
    // RocksDB ages files in whole seconds: after two, the base's file is due for periodic
    // compaction at the next change of the column family.
    std::thread::sleep(Duration::from_millis(2_100));
    for operand in [b"b", b"c", b"d"] {
        env.clock.advance(99);
        b.merge(k, b"", operand).unwrap();
    }
    // The operands go to an L0 file; the periodic compaction rewrites the base's file alone,
    // 297 ms after the base's write, past its expiry plus one TTL.
    b.flush_all().unwrap();
    b.db()
        .wait_for_compact(&::rocksdb::WaitForCompactOptions::default())
        .unwrap();
    let files: Vec<String> = b
        .db()
        .live_files()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        !files.contains(&base_file[0]),
        "the periodic compaction did not run: {files:?}"
    );
    assert_eq!(files_at_level(&b, 0), 1, "the operands stay in L0");
    env.clock.advance(53);
    assert_eq!(b.get(k, b"").unwrap(), Some(b"abcd".to_vec()));
}

fn bottom_files(b: &RocksDbBackend) -> Vec<String> {
    let files = b.db().live_files().unwrap();
    let bottom = files.iter().map(|f| f.level).max().unwrap_or(0);
    files
        .into_iter()
        .filter(|f| f.level == bottom && bottom > 0)
        .map(|f| f.name)
        .collect()
}

fn files_at_level(b: &RocksDbBackend, level: i32) -> usize {
    let files = b.db().live_files().unwrap();
    files.iter().filter(|f| f.level == level).count()
}

/// Between full compactions, expired entries of TTL states that take merges are deleted by an
/// incremental sweep (the compaction filter may not judge them alone); live ones stay.
#[test]
fn sweep_deletes_expired_appends_and_keeps_live_ones() {
    let env = Env::new();
    let mut b = env.open();
    let lists = b
        .register_state(
            &StateDescriptor::new("l", StateKind::List).with_ttl(Duration::from_millis(100)),
        )
        .unwrap();
    let other = b
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    let keys: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for key in &keys {
        b.merge(scope(lists, key), b"", b"x").unwrap();
    }
    env.clock.advance(150);
    b.merge(scope(lists, &keys[0]), b"", b"live").unwrap();
    let raw_entries = |b: &RocksDbBackend| {
        let (lower, upper) = key_group_bounds(b.config.key_groups);
        let mut n = 0;
        b.for_each_raw(b.cf(lists).unwrap(), lower, upper, &mut |_, _| {
            n += 1;
            Ok(Visit::Continue)
        })
        .unwrap();
        n
    };
    assert_eq!(raw_entries(&b), 600, "expired entries are still stored");
    for i in 0..(2 * ttl::SWEEP_EVERY_WRITES) as u32 {
        b.put(scope(other, &i.to_be_bytes()), b"", b"v").unwrap();
    }
    assert_eq!(raw_entries(&b), 1, "the sweep deleted every expired list");
    assert_eq!(
        b.get(scope(lists, &keys[0]), b"").unwrap(),
        Some(b"live".to_vec())
    );
}

/// A job restored from another job's checkpoint must not depend on that job's shared files:
/// the other job deletes them when its retention drops them, and restoring the second job's
/// checkpoint then failed (NotFound on an SST). Restore does not claim (Flink's NO_CLAIM):
/// the first checkpoint after it uploads everything under the restored instance's own prefix.
#[test]
fn a_restored_job_does_not_depend_on_the_original_jobs_files() {
    let env = Env::new();
    let mut config = env.config();
    config.retained_checkpoints = 1;
    let open = |config: &InstanceConfig| {
        RocksDbBackend::open(
            config.clone(),
            RocksDbSettings::new(env.dir.path().join("l"), resources()),
        )
        .unwrap()
    };
    let mut job_a = open(&config);
    let s = job_a
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    for i in 0..1_000u32 {
        job_a
            .put(scope(s, &i.to_be_bytes()), b"", &noise(i))
            .unwrap();
    }
    let a1 = job_a.checkpoint(1).unwrap();
    job_a.notify_checkpoint_complete(1).unwrap();

    let mut job_b = open(&config);
    job_b.restore(&[a1]).unwrap();
    let b_first = job_b.checkpoint(101).unwrap();
    job_b.notify_checkpoint_complete(101).unwrap();
    let stats = job_b.last_checkpoint_stats().unwrap().clone();
    assert_eq!(stats.files_reused, 0, "{stats:?}");

    // Job A moves on: a full compaction replaces its SSTs and retention drops checkpoint 1,
    // deleting the files only it referenced.
    for i in 0..1_000u32 {
        job_a.put(scope(s, &i.to_be_bytes()), b"", b"new").unwrap();
    }
    job_a.compact().unwrap();
    job_a.checkpoint(2).unwrap();
    job_a.notify_checkpoint_complete(2).unwrap();

    let mut restored = open(&config);
    restored.restore(&[b_first]).unwrap();
    assert_eq!(
        restored.get(scope(s, &7u32.to_be_bytes()), b"").unwrap(),
        Some(noise(7))
    );
}

/// Checkpoint storage whose MANIFEST put takes effect but reports a failure (a lost
/// response), and whose MANIFEST deletes fail.
#[derive(Debug)]
struct LostManifestResponse(LocalDirStorage);

impl CheckpointStorage for LostManifestResponse {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn put(&self, path: &str, data: &[u8]) -> crate::Result<()> {
        self.0.put(path, data)?;
        if path.ends_with("MANIFEST") {
            return Err(Error::new(ErrorKind::Unavailable, "lost response"));
        }
        Ok(())
    }
    fn put_file(&self, path: &str, local: &Path) -> crate::Result<u64> {
        self.0.put_file(path, local)
    }
    fn get(&self, path: &str) -> crate::Result<Vec<u8>> {
        self.0.get(path)
    }
    fn list(&self, prefix: &str) -> crate::Result<Vec<String>> {
        self.0.list(prefix)
    }
    fn exists(&self, path: &str) -> crate::Result<bool> {
        self.0.exists(path)
    }
    fn delete(&self, path: &str) -> crate::Result<()> {
        if path.ends_with("MANIFEST") {
            return Err(Error::new(ErrorKind::Unavailable, "delete refused"));
        }
        self.0.delete(path)
    }
}

/// A failed checkpoint whose manifest could not be taken back must keep the files it points
/// at: cleaning up the data files first left a visible manifest over deleted files.
#[test]
fn a_failed_checkpoint_never_leaves_a_manifest_over_deleted_files() {
    let env = Env::new();
    let faulty = Arc::new(LostManifestResponse(
        LocalDirStorage::new(env.dir.path().join("faulty")).unwrap(),
    ));
    let config = env.config().with_checkpoint_storage(faulty.clone());
    let mut b = RocksDbBackend::open(
        config.clone(),
        RocksDbSettings::new(env.dir.path().join("l"), resources()),
    )
    .unwrap();
    let s = b
        .register_state(&StateDescriptor::new("v", StateKind::Value))
        .unwrap();
    for i in 0..500u32 {
        b.put(scope(s, &i.to_be_bytes()), b"", &noise(i)).unwrap();
    }
    let err = b.checkpoint(1).unwrap_err();
    assert!(err.to_string().contains("lost response"), "{err}");
    let handle = CheckpointHandle {
        checkpoint_id: 1,
        backend: "rocksdb".into(),
        format: ROCKSDB_FORMAT.into(),
        location: crate::checkpoint::checkpoint_location(None, "rocksdb", 1, config.key_groups),
        key_groups: config.key_groups,
    };
    assert!(faulty.exists(&handle.manifest_path()).unwrap());
    let mut r = RocksDbBackend::open(
        config,
        RocksDbSettings::new(env.dir.path().join("l"), resources()),
    )
    .unwrap();
    r.restore(&[handle]).unwrap();
    assert_eq!(
        r.get(scope(s, &7u32.to_be_bytes()), b"").unwrap(),
        Some(noise(7))
    );
}

fn timer(ts: i64, key: &[u8]) -> Timer {
    Timer {
        timestamp: ts,
        key_group: key_group_of(key, MAX_PAR),
        key: key.to_vec(),
        namespace: Vec::new(),
    }
}

/// Past the limit, held registrations are written without waiting for a read.
#[test]
fn many_held_timer_registrations_are_written_before_any_read() {
    let env = Env::new();
    let mut b = env.open();
    let q = b
        .register_state(&StateDescriptor::new("t", StateKind::Timers))
        .unwrap();
    for i in 0..crate::pending_timers::PendingTimers::LIMIT as u32 {
        b.register_timer(q, &timer(i64::from(i), &i.to_be_bytes()))
            .unwrap();
    }
    assert!(b.pending_timers.borrow().is_empty());
    let keys = b
        .db()
        .property_int_value_cf(b.cf(q).unwrap(), "rocksdb.num-entries-active-mem-table")
        .unwrap();
    assert_eq!(
        keys,
        Some(crate::pending_timers::PendingTimers::LIMIT as u64)
    );
}

/// Scans of a scope skip the files without it when the scope prefix filter is on (the
/// default), and find the same entries either way, forward and reverse.
#[test]
fn scans_of_absent_scopes_skip_files_through_the_scope_filter() {
    let scan_all = |b: &RocksDbBackend, s: StateId, key: &[u8], direction: Direction| {
        let mut seen = Vec::new();
        b.scan(
            scope(s, key),
            UserKeyRange::all(),
            direction,
            &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(Visit::Continue)
            },
        )
        .unwrap();
        seen
    };
    let run = |scope_prefix_filter: Option<bool>| {
        let env = Env::new();
        let mut config = RocksDbConfig::default();
        config.cf.scope_prefix_filter = scope_prefix_filter;
        let mut b = env.open_configured(config);
        let s = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        // Even keys have entries, in two files; odd keys have none.
        for file in 0..2u32 {
            for k in (0..400u32).step_by(2) {
                b.put(scope(s, &k.to_be_bytes()), &file.to_be_bytes(), b"v")
                    .unwrap();
            }
            b.flush_all().unwrap();
        }
        let mut found = Vec::new();
        for k in 0..400u32 {
            for direction in [Direction::Forward, Direction::Reverse] {
                found.push(scan_all(&b, s, &k.to_be_bytes(), direction));
            }
        }
        let tickers = b.rocksdb_stats().unwrap().tickers;
        let filtered = tickers["rocksdb.non.last.level.seek.filtered"]
            + tickers["rocksdb.last.level.seek.filtered"];
        (found, filtered)
    };
    let (with_filter, filtered) = run(None);
    let (without, not_filtered) = run(Some(false));
    assert_eq!(with_filter, without);
    assert_eq!(with_filter[0].len(), 2);
    assert_eq!(with_filter[3].len(), 0);
    assert!(filtered >= 200, "{filtered} seeks skipped a file");
    assert_eq!(not_filtered, 0);
}

/// Scans of scopes spread over memtables, L0 files and deeper levels, forward and reverse,
/// with point and range tombstones between them, return the same entries whether their
/// seeks read the levels in parallel (`async_io`, the default) or one after the other
/// (the presets).
#[test]
fn scans_read_the_same_with_and_without_parallel_level_reads() {
    let run = |async_io: bool, scope_prefix_filter: Option<bool>| {
        let env = Env::new();
        let mut config = RocksDbConfig::default();
        config.backend.async_io = Some(async_io);
        config.cf.scope_prefix_filter = scope_prefix_filter;
        let mut b = env.open_configured(config);
        let s = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        for round in 0..6u32 {
            for k in 0..50u32 {
                let user_key = (round * 10 + k % 7).to_be_bytes();
                b.put(
                    scope(s, &k.to_be_bytes()),
                    &user_key,
                    &noise(round * 100 + k),
                )
                .unwrap();
                if k % 5 == round % 5 {
                    b.delete(scope(s, &k.to_be_bytes()), &(k % 7).to_be_bytes())
                        .unwrap();
                }
            }
            if round == 2 {
                b.delete_range(
                    scope(s, &3u32.to_be_bytes()),
                    UserKeyRange::from_half_open(Some(&5u32.to_be_bytes()), None),
                )
                .unwrap();
                b.compact().unwrap();
            } else if round < 5 {
                b.flush_all().unwrap();
            }
        }
        let mut found = Vec::new();
        for k in 0..52u32 {
            for direction in [Direction::Forward, Direction::Reverse] {
                let mut seen = Vec::new();
                b.scan(
                    scope(s, &k.to_be_bytes()),
                    UserKeyRange::from_half_open(Some(&2u32.to_be_bytes()), None),
                    direction,
                    &mut |k, v| {
                        seen.push((k.to_vec(), v.to_vec()));
                        Ok(Visit::Continue)
                    },
                )
                .unwrap();
                found.push(seen);
            }
        }
        found
    };
    for filter in [None, Some(false)] {
        let parallel = run(true, filter);
        assert_eq!(
            parallel,
            run(false, filter),
            "scope_prefix_filter {filter:?}"
        );
        assert!(parallel.iter().filter(|s| s.len() > 3).count() > 40);
    }
    assert!(Preset::all()
        .into_iter()
        .all(|p| RocksDbConfig::preset(p).backend.async_io == Some(false)));
}

/// Checkpoints of earlier versions hold a second, per-key-group index of every timer (tag
/// 1). A restore that clips to part of the key groups drops it and keeps exactly the timers
/// of its own key groups.
#[test]
fn a_restore_drops_the_per_group_timer_index_of_earlier_versions() {
    let env = Env::new();
    let mut b = env.open();
    let q = b
        .register_state(&StateDescriptor::new("t", StateKind::Timers))
        .unwrap();
    let timers: Vec<Timer> = (0..200u32)
        .map(|i| timer(i64::from(i), &i.to_be_bytes()))
        .collect();
    for t in &timers {
        b.register_timer(q, t).unwrap();
        let mut legacy = vec![keys::TIMER_BY_GROUP];
        legacy.extend_from_slice(&t.key_group.to_be_bytes());
        legacy.extend_from_slice(&keys::timer_time_key(t)[1..]);
        b.db().put_cf(b.cf(q).unwrap(), legacy, b"").unwrap();
    }
    let handle = b.checkpoint(1).unwrap();
    let owned = KeyGroupRange::new(0, MAX_PAR / 2 - 1).unwrap();
    let mut half = RocksDbBackend::open(
        env.config().with_key_groups(owned),
        RocksDbSettings::new(env.dir.path().join("half"), resources()),
    )
    .unwrap();
    half.restore(&[handle]).unwrap();
    let (mut raw_keys, mut legacy_keys) = (0, 0);
    {
        let mut iter = half.db().raw_iterator_cf(half.cf(q).unwrap());
        iter.seek_to_first();
        while let Some(k) = iter.key() {
            raw_keys += 1;
            legacy_keys += usize::from(k[0] == keys::TIMER_BY_GROUP);
            iter.next();
        }
    }
    let popped = half.pop_due_timers(q, i64::MAX, usize::MAX).unwrap();
    let wanted: Vec<&Timer> = timers
        .iter()
        .filter(|t| owned.contains(t.key_group))
        .collect();
    assert!(!wanted.is_empty() && wanted.len() < timers.len());
    assert_eq!(popped.iter().collect::<Vec<_>>(), wanted);
    assert_eq!((raw_keys, legacy_keys), (wanted.len(), 0));
}

/// Forward scans reuse one iterator per state (kept_iterators.rs): each scan must still see
/// every write, delete, range delete, flush and compaction since the last one. Without the
/// scope prefix extractor (every Flink preset) scans keep no iterator and must agree.
#[test]
fn kept_iterators_see_every_change_between_scans() {
    for scope_prefix_filter in [None, Some(false)] {
        scans_see_every_change(scope_prefix_filter);
    }
}

fn scans_see_every_change(scope_prefix_filter: Option<bool>) {
    let env = Env::new();
    let mut config = RocksDbConfig::default();
    config.backend.point_delete_limit = Some(3);
    config.cf.scope_prefix_filter = scope_prefix_filter;
    let keeps = usize::from(scope_prefix_filter.is_none());
    let mut b = env.open_configured(config);
    let s = b
        .register_state(&StateDescriptor::new("rows", StateKind::Map))
        .unwrap();
    let keys = |v: &[u8]| v.iter().map(|k| vec![*k]).collect::<Vec<_>>();
    for i in 0..5u8 {
        b.put(scope(s, b"a"), &[i], b"v").unwrap();
    }
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[0, 1, 2, 3, 4]));
    assert_eq!(b.open.db.kept_iterators(), keeps);

    b.put(scope(s, b"a"), &[9], b"v").unwrap();
    b.delete(scope(s, b"a"), &[1]).unwrap();
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[0, 2, 3, 4, 9]));

    // A range tombstone in the memtable (above the point-delete limit), then in a file.
    for i in 10..100u8 {
        b.put(scope(s, b"a"), &[i], b"v").unwrap();
    }
    b.delete_range(
        scope(s, b"a"),
        UserKeyRange::from_half_open(Some(&[3]), None),
    )
    .unwrap();
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[0, 2]));
    b.db().flush_cf(b.cf(s).unwrap()).unwrap();
    assert_eq!(file_range_tombstones(&b, s), "# range deletions=1");
    b.put(scope(s, b"a"), &[7], b"v").unwrap();
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[0, 2, 7]));
    assert_eq!(b.open.db.kept_iterators(), keeps);
    b.compact().unwrap();
    assert_eq!(b.open.db.kept_iterators(), 0, "a full flush releases them");
    b.delete(scope(s, b"a"), &[0]).unwrap();
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[2, 7]));

    // Bounds inside the scope, and a scope next to it that must not leak in.
    b.put(scope(s, b"b"), &[1], b"v").unwrap();
    let mut seen = Vec::new();
    b.scan(
        scope(s, b"a"),
        UserKeyRange::from_half_open(Some(&[2]), Some(&[7])),
        Direction::Forward,
        &mut |k, _| {
            seen.push(k.to_vec());
            Ok(Visit::Continue)
        },
    )
    .unwrap();
    assert_eq!(seen, keys(&[2]));
    assert_eq!(user_keys(&b, scope(s, b"absent")), keys(&[]));
    assert_eq!(user_keys(&b, scope(s, b"b")), keys(&[1]));

    // Registering a state creates a column family, which needs the DB alone.
    assert_eq!(b.open.db.kept_iterators(), keeps);
    let t = b
        .register_state(&StateDescriptor::new("more", StateKind::Map))
        .unwrap();
    assert_eq!(b.open.db.kept_iterators(), 0);
    b.put(scope(t, b"a"), &[1], b"v").unwrap();
    assert_eq!(user_keys(&b, scope(t, b"a")), keys(&[1]));
    assert_eq!(user_keys(&b, scope(s, b"a")), keys(&[2, 7]));
}

/// A visitor may scan the same state again (through a shared reference): the inner scan
/// gets an iterator of its own while the outer one holds the kept one.
#[test]
fn a_scan_inside_a_visitor_gets_an_iterator_of_its_own() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("rows", StateKind::Map))
        .unwrap();
    for i in 0..3u8 {
        b.put(scope(s, b"outer"), &[i], b"v").unwrap();
        b.put(scope(s, b"inner"), &[10 + i], b"v").unwrap();
    }
    let backend = &b;
    let mut pairs = Vec::new();
    backend
        .scan(
            scope(s, b"outer"),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |k, _| {
                pairs.push((k.to_vec(), user_keys(backend, scope(s, b"inner"))));
                Ok(Visit::Continue)
            },
        )
        .unwrap();
    assert_eq!(pairs.len(), 3);
    for (i, (outer, inner)) in pairs.iter().enumerate() {
        assert_eq!(outer, &vec![i as u8]);
        assert_eq!(inner, &vec![vec![10u8], vec![11], vec![12]]);
    }
}

/// A kept iterator pins the memtable it last read; once enough keys have been written
/// since, the next write drops every kept iterator and the flushed memtable is freed, with
/// no scan after the one that pinned it (a write-only phase).
#[test]
fn kept_iterators_release_flushed_memtables_after_enough_writes() {
    let env = Env::new();
    let mut b = env.open();
    let pinned_state = b
        .register_state(&StateDescriptor::new("pinned", StateKind::Map))
        .unwrap();
    let busy = b
        .register_state(&StateDescriptor::new("busy", StateKind::Map))
        .unwrap();
    let all_memtables = |b: &RocksDbBackend| {
        b.db()
            .property_int_value_cf(b.cf(pinned_state).unwrap(), "rocksdb.size-all-mem-tables")
            .unwrap()
            .unwrap()
    };
    for i in 0..2_000u32 {
        b.put(scope(pinned_state, b"k"), &i.to_be_bytes(), &noise(i))
            .unwrap();
    }
    assert_eq!(user_keys(&b, scope(pinned_state, b"k")).len(), 2_000);
    b.db().flush_cf(b.cf(pinned_state).unwrap()).unwrap();
    let pinned = all_memtables(&b);
    assert!(
        pinned > 200_000,
        "the flushed memtable stays pinned: {pinned}"
    );

    let writes = u32::try_from(kept_iterators::RELEASE_AFTER_WRITES).unwrap() + 1;
    for i in 0..writes {
        b.put(scope(busy, b"k"), &i.to_be_bytes(), b"").unwrap();
    }
    let released = all_memtables(&b);
    assert!(
        released < pinned / 4,
        "released {released} bytes of memtables, pinned {pinned}"
    );
    assert_eq!(b.open.db.kept_iterators(), 0);
}

/// A prefetched scope is in the block cache when the scan comes: the prefetch reads its
/// blocks (data-block misses), the scan then misses none. With `prefetch_threads = 0` a
/// prefetch reads nothing and the scan misses instead.
#[test]
fn a_prefetched_scope_is_scanned_from_the_cache() {
    let run = |threads: usize| -> (u64, u64) {
        let env = Env::new();
        let mut config = RocksDbConfig::default();
        config.backend.prefetch_threads = Some(threads);
        let mut b = env.open_configured(config);
        let s = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        for k in 0..64u32 {
            for u in 0..16u32 {
                let value = noise(k * 16 + u).repeat(10);
                b.put(scope(s, &k.to_be_bytes()), &u.to_be_bytes(), &value)
                    .unwrap();
            }
        }
        // On disk, and not in the cache (compactions do not fill it).
        b.compact().unwrap();
        let misses = |b: &RocksDbBackend| b.rocksdb_stats().unwrap().block_cache_misses;
        let before = misses(&b);
        b.prefetch(&[scope(s, &7u32.to_be_bytes())]).unwrap();
        b.open.db.wait_for_prefetches();
        let prefetched = misses(&b) - before;
        let mut entries = 0;
        b.scan(
            scope(s, &7u32.to_be_bytes()),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |_, _| {
                entries += 1;
                Ok(Visit::Continue)
            },
        )
        .unwrap();
        assert_eq!(entries, 16);
        (prefetched, misses(&b) - before - prefetched)
    };
    let (prefetched, scanned) = run(2);
    assert!(prefetched > 0 && scanned == 0, "{prefetched} {scanned}");
    let (prefetched, scanned) = run(0);
    assert!(prefetched == 0 && scanned > 0, "{prefetched} {scanned}");
}

/// The prefetch threads share the DB: registering a state (which needs the DB alone) and
/// closing the backend stop them first, with prefetches still queued, and the DB reopens.
#[test]
fn prefetch_threads_stop_for_a_new_state_and_at_close() {
    let env = Env::new();
    let keys: Vec<[u8; 4]> = (0..300u32).map(u32::to_be_bytes).collect();
    let prefetching = || {
        let mut config = RocksDbConfig::default();
        config.backend.prefetch_threads = Some(2);
        env.open_configured(config)
    };
    {
        let mut b = prefetching();
        let s = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        for k in &keys {
            b.put(scope(s, k), b"u", &noise(7).repeat(20)).unwrap();
        }
        b.compact().unwrap();
        let all: Vec<Scope<'_>> = keys.iter().map(|k| scope(s, k)).collect();
        b.prefetch(&all).unwrap();
        let t = b
            .register_state(&StateDescriptor::new("n", StateKind::Map))
            .unwrap();
        b.put(scope(t, b"k"), b"u", b"v").unwrap();
        b.prefetch(&[scope(t, b"k")]).unwrap();
        assert_eq!(b.get(scope(t, b"k"), b"u").unwrap(), Some(b"v".to_vec()));
        b.prefetch(&all).unwrap();
    }
    // Closed: the directory is free for a new backend.
    let mut b = prefetching();
    let s = b
        .register_state(&StateDescriptor::new("m", StateKind::Map))
        .unwrap();
    b.prefetch(&[scope(s, b"k")]).unwrap();
    assert_eq!(b.get(scope(s, b"k"), b"u").unwrap(), None);
}

/// Prefetch hints are checked like reads: a scope of a key group the instance does not own
/// is refused, and the presets (today's baselines) do not prefetch.
#[test]
fn prefetch_checks_its_scopes_and_presets_do_not_prefetch() {
    let env = Env::new();
    let mut b = env.open();
    let s = b
        .register_state(&StateDescriptor::new("m", StateKind::Map))
        .unwrap();
    let mut bad = scope(s, b"k");
    bad.key_group = MAX_PAR;
    let err = b.prefetch(&[bad]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(Preset::all()
        .into_iter()
        .all(|p| RocksDbConfig::preset(p).backend.prefetch_threads == Some(0)));
}
