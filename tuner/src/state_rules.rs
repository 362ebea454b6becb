//! The rules for one state's column family: memtables, levels, filters, blocks, compression,
//! index layout, deletions, TTL and blob files.

use statekit_backend::rocksdb_config::{
    CfOptions, Compression, DeletionTriggeredCompaction, IndexType, TableOptions,
    DEFAULT_SCOPE_FILTER_BITS, MAX_HASH_SKIPLIST_BUCKETS,
};
use statekit_backend::StateKind;

use crate::derive::Memory;
use crate::machine::Machine;
use crate::shape::{StateShape, WorkloadShape};
use crate::tuning::{bytes, rate, Tuning};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Bytes a memtable entry takes beyond its key and value (skip-list node, sequence number,
/// length headers).
const MEMTABLE_ENTRY_OVERHEAD: f64 = 40.0;
/// Entries a memtable holds from which a hash of skip lists pays: a skip list of this many
/// entries is 8 levels of branching 4, each search a cache miss or two per level.
const HASH_MEMTABLE_MIN_ENTRIES: f64 = 65_536.0;
/// Bytes per entry of the sorted copy RocksDB makes of a hash memtable to flush or iterate
/// it across buckets (a skip-list node of pointers to the entry).
const HASH_COPY_BYTES_PER_ENTRY: f64 = 24.0;
/// Share of the memory budget the largest such copy may take.
const HASH_COPY_BUDGET_SHARE: f64 = 0.05;

/// Derives the options of `state` into `t.config.states[state.name]`.
pub(crate) fn derive(
    state: &StateShape,
    shape: &WorkloadShape,
    machine: &Machine,
    memory: &Memory,
    total_write_bytes: f64,
    t: &mut Tuning,
) {
    let mut cf = CfOptions::default();
    let mut table = TableOptions::default();
    let name = state.name.as_str();
    let mut explain = |key: &str, value: String, rule: String, figures: String| {
        t.explain(Some(name), key, value, rule, figures);
    };
    let r = &state.rates;
    let write_bytes = state.write_bytes_per_sec();

    // Memtables: the write buffer manager's memory, shared in proportion to write bytes. The
    // manager flushes the largest memtable once all mutable ones reach its limit, so a
    // state's memtable fills to about its share before it is flushed, whatever its size.
    let share = if total_write_bytes > 0.0 {
        write_bytes / total_write_bytes
    } else {
        1.0 / shape.states.len().max(1) as f64
    };
    let mut memtable = round_mib((memory.memtables as f64 * share) as u64).clamp(MIB, 256 * MIB);
    let busy = share >= 0.2;
    let count = if busy { 4 } else { 2 };
    cf.max_write_buffer_number = Some(count);
    explain(
        "cf.max_write_buffer_number",
        count.to_string(),
        if busy {
            "a fifth or more of the writes: room for immutable memtables while a flush runs, \
             so a slow flush does not stop writes (the write buffer manager still bounds the \
             total)"
        } else {
            "few writes: one memtable and one being flushed"
        }
        .into(),
        format!("{:.0}% of memtable writes", share * 100.0),
    );
    let written = (r.entry_writes() * shape.seconds).max(1.0);
    let overwrites = written / state.distinct_keys.max(1) as f64;
    let merge = if overwrites >= 2.0 { 2 } else { 1 };
    cf.min_write_buffer_number_to_merge = Some(merge);
    explain(
        "cf.min_write_buffer_number_to_merge",
        merge.to_string(),
        if merge == 2 {
            "each key is written twice or more: merging two memtables into one L0 file drops \
             the older versions before they reach the disk"
        } else {
            "keys are written about once: merging memtables would only delay the flush"
        }
        .into(),
        format!(
            "{written:.0} writes over {} distinct keys ({overwrites:.1} per key)",
            state.distinct_keys
        ),
    );

    // The memtable's representation: inserts into one large skip list miss the cache at
    // every level; a hash of small lists, one per bucket of scopes, searches only the
    // scope's few entries. Reads that leave their scope would copy the memtable each time,
    // and so does a flush: its sorted copy lives outside the accounted memory, so the
    // memtable is capped to keep the largest copy within a twentieth of the budget.
    let entry_bytes = (state.key_bytes + state.value_bytes + MEMTABLE_ENTRY_OVERHEAD).max(1.0);
    let in_memtable = memtable as f64 / entry_bytes;
    let writes = r.entry_writes() + r.removals();
    // The share the hash's cap took the memtable down from, if it did.
    let mut capped_from = None;
    if state.kind != StateKind::Timers
        && writes > 0.0
        && r.cross_scope_scans == 0.0
        && in_memtable >= HASH_MEMTABLE_MIN_ENTRIES
    {
        // The most entries a memtable of this size can hold: deletions, keys only.
        let copy_per_memtable_byte =
            HASH_COPY_BYTES_PER_ENTRY / (state.key_bytes + MEMTABLE_ENTRY_OVERHEAD).max(1.0);
        let cap = round_mib(
            (machine.memory_budget as f64 * HASH_COPY_BUDGET_SHARE / copy_per_memtable_byte) as u64,
        );
        if cap < memtable {
            capped_from = Some(memtable);
            memtable = cap;
        }
        let held = memtable as f64 / entry_bytes;
        let buckets = (held as u64)
            .next_power_of_two()
            .min(MAX_HASH_SKIPLIST_BUCKETS);
        cf.hash_skiplist_buckets = Some(buckets);
        explain(
            "cf.hash_skiplist_buckets",
            buckets.to_string(),
            format!(
                "a memtable would hold {HASH_MEMTABLE_MIN_ENTRIES:.0} entries or more and \
                 every read stays in one scope, forward: a hash of skip lists, one bucket per \
                 entry it holds (power of two), so an insert searches its scope's few entries \
                 instead of a list of the whole memtable. Measured on ad-click (3.7M events, \
                 256 MiB, alternated runs, this rule with its capped memtable against the skip \
                 list at the full share): display merges 6.1-6.6 -> 2.8-2.9 us and the job \
                 1.28x and 1.56x as fast with direct I/O; 0.99x and 0.96x (within the noise) \
                 with the page cache"
            ),
            format!(
                "~{held:.0} entries per {} memtable ({:.0} + {:.0} bytes, ~{} overhead); \
                 writes {writes:.0}/s, reverse or whole-state scans 0/s",
                bytes(memtable),
                state.key_bytes,
                state.value_bytes,
                MEMTABLE_ENTRY_OVERHEAD
            ),
        );
    }
    cf.write_buffer_size = Some(memtable);
    let size_rule = "this state's share of the memtable memory (shares follow write bytes), \
                     whole MiB, 1 to 256 MiB: the write buffer manager flushes when all \
                     memtables together reach its limit, so a smaller size would only flush \
                     smaller L0 files more often";
    let (rule, figures) = match capped_from {
        None => (
            size_rule.to_string(),
            format!(
                "memtable writes {} = {:.0}% of all; memtable memory {}",
                rate(write_bytes),
                share * 100.0,
                bytes(memory.memtables)
            ),
        ),
        Some(share_bytes) => (
            format!(
                "{size_rule}; capped for the hash memtable: a flush copies it into one sorted \
                 list ({HASH_COPY_BYTES_PER_ENTRY:.0} bytes an entry, outside the accounted \
                 memory), which must stay within {:.0}% of the budget even for a memtable of \
                 deletions only (uncapped, the copies took a run 7 MiB over the RSS rule)",
                HASH_COPY_BUDGET_SHARE * 100.0
            ),
            format!(
                "share {} ({:.0}% of memtable writes {}); cap: {:.0}% of {} x ({:.0} + {:.0}) \
                 / {:.0} bytes an entry",
                bytes(share_bytes),
                share * 100.0,
                rate(write_bytes),
                HASH_COPY_BUDGET_SHARE * 100.0,
                bytes(machine.memory_budget),
                state.key_bytes,
                MEMTABLE_ENTRY_OVERHEAD,
                HASH_COPY_BYTES_PER_ENTRY
            ),
        ),
    };
    explain("cf.write_buffer_size", bytes(memtable), rule, figures);

    // L0 and L1 (RocksDB's tuning guide): L0 holds about memtable x merge x trigger; L1 as
    // large, so an L0->L1 compaction is quick; target files a tenth of L1.
    let reads = r.reads();
    // Each L0->L1 compaction of keys spread over the whole range rewrites L1: a shorter L0
    // pays that twice as often, which only scans as frequent as writes repay.
    let scan_heavy = r.scans > 0.0 && r.scans >= r.entry_writes();
    let trigger = if scan_heavy { 2 } else { 4 };
    cf.level0_file_num_compaction_trigger = Some(trigger);
    explain(
        "cf.level0_file_num_compaction_trigger",
        trigger.to_string(),
        if scan_heavy {
            "scans are as frequent as writes: a scan reads one block per L0 file, so L0 is \
             kept short (each L0->L1 compaction then rewrites L1 twice as often)"
        } else {
            "RocksDB's default: scans are rarer than writes, and a shorter L0 would rewrite \
             L1 more often"
        }
        .into(),
        format!("scans {:.0}/s, point reads {:.0}/s", r.scans, r.gets),
    );
    let l1 = round_mib(memtable * merge as u64 * trigger as u64).max(8 * MIB);
    cf.max_bytes_for_level_base = Some(l1);
    explain(
        "cf.max_bytes_for_level_base",
        bytes(l1),
        "L1 as large as L0 at its compaction trigger (memtable x merged memtables x L0 \
         trigger, at least 8 MiB), so L0->L1 compactions stay short (RocksDB tuning guide)"
            .into(),
        format!(
            "memtable {}, merge {merge}, trigger {trigger}",
            bytes(memtable)
        ),
    );
    let target = round_mib(l1 / 10).max(2 * MIB);
    cf.target_file_size_base = Some(target);
    explain(
        "cf.target_file_size_base",
        bytes(target),
        "a tenth of L1, at least 2 MiB (RocksDB tuning guide): compactions pick small files, \
         few enough that table readers stay cheap"
            .into(),
        format!("L1 {}", bytes(l1)),
    );
    let levels = compression_levels(machine);
    explain(
        "cf.compression_per_level",
        serde_json::to_string(&levels).unwrap_or_default(),
        format!(
            "no compression on L0 and L1 (short-lived, rewritten soon), LZ4 below, {} at the \
             bottom, which holds ~90% of the data (RocksDB tuning guide, TiKV)",
            if machine.cores > 4 {
                "ZSTD (more cores than compactions need)"
            } else {
                "LZ4 too (ZSTD's CPU would compete with the job on few cores)"
            }
        ),
        format!("{} cores", machine.cores),
    );
    cf.compression_per_level = Some(levels);

    // Filters: only point reads use them.
    let ops = reads + r.entry_writes() + r.removals();
    let point_share = if ops > 0.0 { r.gets / ops } else { 0.0 };
    if state.kind != StateKind::Timers && point_share >= 0.01 {
        let bits = (10.0 + (6.0 * state.get_miss_ratio).round()).clamp(10.0, 16.0);
        table.bloom_filter_bits_per_key = Some(bits);
        explain(
            "table.bloom_filter_bits_per_key",
            format!("{bits}"),
            "point reads are frequent: a Bloom filter skips files without the key; 10 bits \
             (1% false positives) plus up to 6 more as more reads miss (each extra bit about \
             halves false positives where misses probe every level)"
                .into(),
            format!(
                "point reads {:.0}/s ({:.0}% of operations), {:.0}% miss",
                r.gets,
                point_share * 100.0,
                state.get_miss_ratio * 100.0
            ),
        );
        let hits = state.get_miss_ratio < 0.1;
        cf.optimize_filters_for_hits = Some(hits);
        explain(
            "cf.optimize_filters_for_hits",
            hits.to_string(),
            if hits {
                "reads almost always find their key, so the last level's filter (about 90% of \
                 filter memory) would answer \"maybe\" every time: no filter there (Monkey: \
                 the largest level gains least from its bits)"
            } else {
                "many reads miss: the last level's filter saves a block read per miss"
            }
            .into(),
            format!("{:.1}% of point reads miss", state.get_miss_ratio * 100.0),
        );
    }

    // Scope filters: every read of a key/value state is a get or a scan inside one scope
    // (key group, key, namespace), so filters of scopes serve both.
    if state.kind != StateKind::Timers {
        cf.scope_prefix_filter = Some(true);
        explain(
            "cf.scope_prefix_filter",
            "true".into(),
            "every read of the state is a get or a scan of one scope: with the scope as the \
             prefix, filters hold scopes and a read skips every file without its scope (a \
             scan's seek otherwise reads an index and a data block in every level)"
                .into(),
            format!("scans {:.0}/s, point reads {:.0}/s", r.scans, r.gets),
        );
        if table.bloom_filter_bits_per_key.is_none() {
            table.bloom_filter_bits_per_key = Some(DEFAULT_SCOPE_FILTER_BITS);
            explain(
                "table.bloom_filter_bits_per_key",
                format!("{DEFAULT_SCOPE_FILTER_BITS}"),
                "the scope filters' bits per key: 1% false positives; they hold one entry per \
                 scope and file, so they stay small"
                    .into(),
                format!("point reads {:.0}% of operations", point_share * 100.0),
            );
        }
        let whole = point_share >= 0.01;
        table.whole_key_filtering = Some(whole);
        explain(
            "table.whole_key_filtering",
            whole.to_string(),
            if whole {
                "point reads are frequent: filters hold whole keys too, so a read of a user key \
                 its scope lacks is filtered as well"
            } else {
                "no point reads to speak of: filters hold scopes only, a fraction of the size"
            }
            .into(),
            format!("point reads {:.1}% of operations", point_share * 100.0),
        );
    }

    // Memtable prefix Bloom filter: every read probes every memtable of its state. When reads
    // outnumber writes, most look for scopes the memtable (recent writes only) lacks, and a
    // filter of its scopes skips the skip-list seek. RocksDB allocates `ratio` x the
    // memtable size for it with every memtable, so it is sized for the worst case of one scope
    // per entry at the scope filters' bits, not a flat 5% (which at an 8 MiB budget took the
    // memtables to 17.6 MiB).
    if state.kind != StateKind::Timers && reads > 0.0 && reads >= r.entry_writes() {
        let entry = state.key_bytes + state.value_bytes + MEMTABLE_ENTRY_OVERHEAD;
        let ratio = (DEFAULT_SCOPE_FILTER_BITS / 8.0 / entry.max(1.0)).clamp(0.001, 0.05);
        let ratio = (ratio * 1000.0).round() / 1000.0;
        cf.memtable_prefix_bloom_size_ratio = Some(ratio);
        explain(
            "cf.memtable_prefix_bloom_size_ratio",
            format!("{ratio}"),
            format!(
                "reads outnumber writes, so most reads probe memtables for scopes they lack: a \
                 Bloom filter of the memtable's scopes skips its seek; sized for one scope per \
                 entry at {DEFAULT_SCOPE_FILTER_BITS} bits ({DEFAULT_SCOPE_FILTER_BITS} / 8 \
                 bytes over the entry's bytes in the memtable, ~{MEMTABLE_ENTRY_OVERHEAD} of \
                 them overhead), 0.001 to 0.05 (1.09x on ad-click's display scans of the \
                 clicks, measured at 0.05)"
            ),
            format!(
                "reads {:.0}/s against entry writes {:.0}/s; entry {:.0} + {:.0} bytes",
                reads,
                r.entry_writes(),
                state.key_bytes,
                state.value_bytes
            ),
        );
    }

    // Data blocks: a scan reads its entries from as few blocks as possible; a large value
    // should not span blocks.
    let entry = state.key_bytes + state.value_bytes;
    let scan_bytes = if r.scans > 0.0 {
        state.scan_entries * entry
    } else {
        0.0
    };
    let wanted = scan_bytes.max(2.0 * state.value_bytes_p99).max(4096.0);
    let block = (wanted as u64).next_power_of_two().clamp(4 * KIB, 64 * KIB);
    table.block_size = Some(block);
    explain(
        "table.block_size",
        bytes(block),
        "the bytes a scan reads (or twice the largest values), as a power of two from 4 KiB \
         (point reads read a whole block: smaller is cheaper) to 64 KiB"
            .into(),
        format!(
            "scans {:.0}/s of {:.1} entries x {:.0} bytes = {:.0} bytes; values p99 {:.0} bytes",
            r.scans, state.scan_entries, entry, scan_bytes, state.value_bytes_p99
        ),
    );

    // Index and filter layout: whole blocks pinned when they fit a twentieth of the cache,
    // partitioned (top level pinned) when the state dwarfs the budget.
    let live = state.live_bytes as f64;
    let index_bytes = live / block as f64 * (state.key_bytes + 8.0);
    let filter_bytes = table
        .bloom_filter_bits_per_key
        .map_or(0.0, |b| state.distinct_keys as f64 * b / 8.0);
    let metadata = index_bytes + filter_bytes;
    let whole = metadata <= memory.cache as f64 * 0.05 * share.max(0.1);
    table.index_type = Some(if whole {
        IndexType::BinarySearch
    } else {
        IndexType::TwoLevelIndexSearch
    });
    table.partition_filters = Some(!whole);
    let figures = format!(
        "live {}, index ~{} + filters ~{}, cache {}",
        bytes(state.live_bytes),
        bytes(index_bytes as u64),
        bytes(filter_bytes as u64),
        bytes(memory.cache)
    );
    let rule = if whole {
        "index and filter blocks fit this state's part of a twentieth of the cache (its \
         share of writes, at least a tenth): whole blocks, pinned, one lookup each"
    } else {
        "index and filter blocks would take more than this state's part of a twentieth of the \
         cache, and they grow with the state \
         (about 1% of it): partitioned, with only the top level pinned (Flink's \
         partitioned-index-filters), so the partitions are evicted like data"
    };
    explain(
        "table.index_type",
        serde_json::to_string(&table.index_type).unwrap_or_default(),
        rule.into(),
        figures.clone(),
    );
    explain(
        "table.partition_filters",
        (!whole).to_string(),
        rule.into(),
        figures,
    );

    // Deletions: range tombstones flushed before reads drown in them; files dense with
    // deletions compacted early.
    if r.range_deletes > 0.0 {
        let limit = ((r.range_deletes * 5.0) as u32).clamp(500, 10_000);
        cf.memtable_max_range_deletions = Some(limit);
        explain(
            "cf.memtable_max_range_deletions",
            limit.to_string(),
            "every read merges the memtable's range tombstones (re-fragmented after each new \
             one): flush after about 5 s of them, 500 to 10,000"
                .into(),
            format!("{:.0} range deletes/s", r.range_deletes),
        );
    }
    let removal_share = if r.entry_writes() > 0.0 {
        (r.removals() + r.range_deletes * state.range_delete_keys.max(1.0)) / r.entry_writes()
    } else {
        0.0
    };
    if removal_share >= 0.3 && r.scans >= r.entry_writes() {
        let trigger = DeletionTriggeredCompaction {
            window_size: 1024,
            deletion_trigger: 512,
            deletion_ratio: 0.5,
        };
        cf.compact_on_deletion = Some(trigger);
        explain(
            "cf.compact_on_deletion",
            "{ window_size = 1024, deletion_trigger = 512, deletion_ratio = 0.5 }".into(),
            "most of what is written is deleted again and scans are as frequent as writes: \
             compact a file once half of any 1024 \
             consecutive entries (or of the file) are deletions, so tombstones and what they \
             cover leave early instead of slowing scans until size-based compaction reaches \
             them (RocksDB's CompactOnDeletionCollector)"
                .into(),
            format!(
                "removals {:.0}% of entry writes",
                (removal_share * 100.0).min(999.0)
            ),
        );
    }

    // TTL: statekit's compaction filter drops an expired whole value (value, reducing and
    // aggregating state) only from files it compacts. Lists and maps take appends that extend
    // a value's life, so the backend removes their expired entries with a sweep instead.
    if let (Some(ttl_ms), false) = (state.ttl_ms, state.kind.takes_merges()) {
        let secs = (ttl_ms / 1000).clamp(3600, 30 * 86_400);
        cf.periodic_compaction_seconds = Some(secs);
        explain(
            "cf.periodic_compaction_seconds",
            secs.to_string(),
            "the TTL filter sees only files that are compacted: recompact every file once per \
             TTL (1 h to 30 days), so expired state leaves the disk within two TTLs"
                .into(),
            format!("TTL {ttl_ms} ms, {:?} state", state.kind),
        );
    }

    // Large values: blob files keep them out of compaction's rewrites.
    if state.value_bytes >= 16.0 * KIB as f64 {
        cf.enable_blob_files = Some(true);
        cf.min_blob_size = Some(16 * KIB);
        cf.enable_blob_garbage_collection = Some(true);
        cf.blob_compression_type = Some(Compression::Lz4);
        let figures = format!("values {:.0} bytes on average", state.value_bytes);
        for (key, value) in [
            ("cf.enable_blob_files", "true".to_string()),
            ("cf.min_blob_size", bytes(16 * KIB)),
            ("cf.enable_blob_garbage_collection", "true".to_string()),
            ("cf.blob_compression_type", "kLZ4Compression".to_string()),
        ] {
            explain(
                key,
                value,
                "values of 16 KiB and more go to blob files, compressed with LZ4 and \
                 garbage-collected: compactions then move 20-byte references instead of \
                 rewriting the values at every level (TiKV's Titan uses the same threshold \
                 order)"
                    .into(),
                figures.clone(),
            );
        }
    }

    let options = t.config.states.entry(state.name.clone()).or_default();
    options.cf = cf;
    options.table = table;
}

/// The compression of each of RocksDB's 7 levels.
fn compression_levels(machine: &Machine) -> Vec<Compression> {
    let bottom = if machine.cores > 4 {
        Compression::Zstd
    } else {
        Compression::Lz4
    };
    let mut levels = vec![Compression::None, Compression::None];
    levels.extend([Compression::Lz4; 4]);
    levels.push(bottom);
    levels
}

/// `n` rounded to whole MiB (down, at least 1 MiB).
fn round_mib(n: u64) -> u64 {
    (n / MIB).max(1) * MIB
}
