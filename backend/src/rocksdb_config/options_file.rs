//! [`RocksDbConfig`] in RocksDB's `OPTIONS` file format (the INI dialect RocksDB writes into
//! every DB directory and reads with `LoadOptionsFromFile`; Speedb reads it too).
//!
//! Sections: `[Version]`, `[DBOptions]`, `[CFOptions "default"]` and
//! `[TableOptions/BlockBasedTable "default"]`, then one `[CFOptions "state:<name>"]` and
//! `[TableOptions/BlockBasedTable "state:<name>"]` pair per state with overrides (the column
//! family the RocksDB backend gives the state, with every option it then runs with, as
//! RocksDB writes them). Keys are RocksDB's option names; the Bloom filter is written as
//! `filter_policy=bloomfilter:<bits>:false`; `scope_prefix_filter` as
//! `prefix_extractor=nullptr` when off and not at all when on (RocksDB cannot load
//! statekit's extractor by name: the backend's default, on, then applies). The `[backend]`
//! settings and `compact_on_deletion` are not RocksDB options that such files carry: they are
//! left out (the TOML form keeps them).
//!
//! [`RocksDbConfig::from_options_str`] is strict: an unknown section or key, or a value that
//! does not parse, is an error naming the file, line and key. [`RocksDbConfig::
//! from_rocksdb_options_str`] reads a file RocksDB wrote, which lists hundreds of options
//! statekit does not model: it keeps the modelled ones and skips the rest (and values
//! statekit cannot represent, such as the `kDisableCompressionOption` sentinel).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    difference, hash_skiplist_factory, CfOptions, DbOptions, RocksDbConfig, StateOptions,
    TableOptions, MEMTABLE_FACTORY, SCOPE_EXTRACTOR_NAME,
};
use crate::error::{Error, ErrorKind, Result};

const DB_SECTION: &str = "DBOptions";
const CF_SECTION: &str = "CFOptions";
const TABLE_SECTION: &str = "TableOptions/BlockBasedTable";
const FILTER_POLICY: &str = "filter_policy";
const BLOOM_BITS: &str = "bloom_filter_bits_per_key";
/// RocksDB nests the pinning tiers in one struct-valued option.
const METADATA_CACHE: &str = "metadata_cache_options";
const UNPARTITIONED_PINNING: &str = "unpartitioned_pinning";
/// Options that `OPTIONS` files do not carry.
const NOT_IN_OPTIONS_FILES: [&str; 1] = ["compact_on_deletion"];
/// `scope_prefix_filter` is written as `prefix_extractor=nullptr` when off and left out when
/// on: RocksDB cannot load statekit's extractor by name (left out, the backend's default,
/// on, applies).
const SCOPE_PREFIX_FILTER: &str = "scope_prefix_filter";
const PREFIX_EXTRACTOR: &str = "prefix_extractor";
/// `hash_skiplist_buckets` is RocksDB's `memtable_factory`: `SkipListFactory` for 0, a
/// `HashSkipListRepFactory` with that many buckets otherwise.
const HASH_SKIPLIST_BUCKETS: &str = "hash_skiplist_buckets";
const SKIPLIST_FACTORY: &str = "SkipListFactory";
const HASH_SKIPLIST_ID: &str = "HashSkipListRepFactory";
/// The column family of a state in the RocksDB backend is `state:<name>`.
pub const STATE_CF_PREFIX: &str = "state:";

impl RocksDbConfig {
    /// Renders the configuration as an `OPTIONS` file.
    ///
    /// # Errors
    /// `Internal` if serialization fails (it cannot for this type).
    pub fn to_options_string(&self) -> Result<String> {
        let mut out = String::from(
            "# RocksDB options written by statekit; unset options keep RocksDB's defaults.\n\
             [Version]\n  rocksdb_version=11.8.1\n  options_file_version=1.1\n",
        );
        write_section(&mut out, "[DBOptions]", &self.db)?;
        write_section(&mut out, "[CFOptions \"default\"]", &self.cf)?;
        write_section(
            &mut out,
            "[TableOptions/BlockBasedTable \"default\"]",
            &self.table,
        )?;
        for name in self.states.keys() {
            let (cf, table) = self.for_state(name);
            let escaped = escape(&format!("{STATE_CF_PREFIX}{name}"));
            write_section(&mut out, &format!("[CFOptions \"{escaped}\"]"), &cf)?;
            write_section(
                &mut out,
                &format!("[TableOptions/BlockBasedTable \"{escaped}\"]"),
                &table,
            )?;
        }
        Ok(out)
    }

    /// Writes an `OPTIONS` file.
    ///
    /// # Errors
    /// An I/O error naming the file.
    pub fn write_options_file(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_options_string()?).map_err(|e| Error::io(path.display(), e))
    }

    /// Reads an `OPTIONS` file strictly.
    ///
    /// # Errors
    /// As [`RocksDbConfig::from_options_str`], or an I/O error naming the file.
    pub fn read_options_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::from_options_str(&text, &path.display().to_string())
    }

    /// Parses an `OPTIONS` document strictly; `source` names it in errors.
    ///
    /// # Errors
    /// `InvalidArgument` naming source, line and key for an unknown section or key or a
    /// value of the wrong type; `InvalidArgument` from [`RocksDbConfig::validate`].
    pub fn from_options_str(text: &str, source: &str) -> Result<Self> {
        parse(text, source, None)
    }

    /// Parses an `OPTIONS` file written by RocksDB, taking the options of column family
    /// `column_family` and skipping options (and values) statekit does not model.
    ///
    /// # Errors
    /// `InvalidArgument` naming source and line for a line that is not `key=value` or a
    /// section header, or for values out of range ([`RocksDbConfig::validate`]).
    pub fn from_rocksdb_options_str(text: &str, source: &str, column_family: &str) -> Result<Self> {
        parse(text, source, Some(column_family))
    }
}

fn write_section<T: Serialize>(out: &mut String, header: &str, section: &T) -> Result<()> {
    let value = serde_json::to_value(section)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("{header}: {e}")))?;
    out.push('\n');
    out.push_str(header);
    out.push('\n');
    if let Value::Object(map) = value {
        for (key, v) in map {
            let text = match (&*key, v) {
                (_, Value::Null) => continue,
                (key, _) if NOT_IN_OPTIONS_FILES.contains(&key) => continue,
                (SCOPE_PREFIX_FILTER, Value::Bool(false)) => {
                    out.push_str(&format!("  {PREFIX_EXTRACTOR}=nullptr\n"));
                    continue;
                }
                (SCOPE_PREFIX_FILTER, _) => continue,
                (HASH_SKIPLIST_BUCKETS, Value::Number(n)) => {
                    let factory = match n.as_u64() {
                        Some(0) | None => SKIPLIST_FACTORY.to_string(),
                        Some(buckets) => hash_skiplist_factory(buckets),
                    };
                    out.push_str(&format!("  {MEMTABLE_FACTORY}={factory}\n"));
                    continue;
                }
                (BLOOM_BITS, v) => {
                    out.push_str(&format!("  {FILTER_POLICY}=bloomfilter:{v}:false\n"));
                    continue;
                }
                (UNPARTITIONED_PINNING, Value::String(tier)) => {
                    out.push_str(&format!(
                        "  {METADATA_CACHE}={{{UNPARTITIONED_PINNING}={tier};}}\n"
                    ));
                    continue;
                }
                (_, Value::String(s)) => s,
                (_, Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(":"),
                (_, other) => other.to_string(),
            };
            out.push_str(&format!("  {key}={text}\n"));
        }
    }
    Ok(())
}

#[derive(Clone, PartialEq)]
enum Section {
    Version,
    Db,
    Cf,
    Table,
    StateCf(String),
    StateTable(String),
    Skipped,
}

#[derive(Default)]
struct Collected {
    entries: Vec<(String, Value, usize)>,
}

fn parse(text: &str, source: &str, lenient_cf: Option<&str>) -> Result<RocksDbConfig> {
    let err = |line: usize, msg: String| Error::invalid(format!("{source}:{line}: {msg}"));
    let mut section = None;
    let mut db = Collected {
        entries: Vec::new(),
    };
    let mut cf = Collected {
        entries: Vec::new(),
    };
    let mut table = Collected {
        entries: Vec::new(),
    };
    let mut states: std::collections::BTreeMap<String, (Collected, Collected)> =
        std::collections::BTreeMap::new();
    let wanted_cf = lenient_cf.unwrap_or("default");
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .strip_suffix(']')
                .ok_or_else(|| err(line_no, format!("section header '{line}' lacks ']'")))?;
            let (name, arg) = match header.split_once(' ') {
                Some((n, a)) => (n, Some(unescape(a.trim().trim_matches('"')))),
                None => (header, None),
            };
            let arg = arg.as_deref();
            section = Some(match (name, arg) {
                ("Version", None) => Section::Version,
                (DB_SECTION, None) => Section::Db,
                (CF_SECTION, Some(cf_name)) if cf_name == wanted_cf => Section::Cf,
                (TABLE_SECTION, Some(cf_name)) if cf_name == wanted_cf => Section::Table,
                (CF_SECTION | TABLE_SECTION, Some(cf_name))
                    if lenient_cf.is_none() && cf_name.starts_with(STATE_CF_PREFIX) =>
                {
                    let state = cf_name[STATE_CF_PREFIX.len()..].to_string();
                    if state.is_empty() {
                        return Err(err(line_no, format!("section [{header}] names no state")));
                    }
                    if name == CF_SECTION {
                        Section::StateCf(state)
                    } else {
                        Section::StateTable(state)
                    }
                }
                (CF_SECTION, Some(_)) | (_, _) if lenient_cf.is_some() => Section::Skipped,
                _ => {
                    return Err(err(
                        line_no,
                        format!(
                            "unknown section [{header}] (expected [Version], [{DB_SECTION}], \
                             [{CF_SECTION} \"default\"], [{TABLE_SECTION} \"default\"] or \
                             those of a column family \"{STATE_CF_PREFIX}<state name>\")"
                        ),
                    ))
                }
            });
            continue;
        }
        let Some(current) = section.clone() else {
            return Err(err(line_no, format!("'{line}' comes before any section")));
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err(line_no, format!("'{line}' is not key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        let is_table = matches!(current, Section::Table | Section::StateTable(_));
        let target = match current {
            Section::Version | Section::Skipped => continue,
            Section::Db => &mut db,
            Section::Cf => &mut cf,
            Section::Table => &mut table,
            Section::StateCf(state) => &mut states.entry(state).or_default().0,
            Section::StateTable(state) => &mut states.entry(state).or_default().1,
        };
        let (key, value) = if !is_table && key == PREFIX_EXTRACTOR {
            // statekit's extractor or none; others are not modelled.
            let on = match value {
                SCOPE_EXTRACTOR_NAME => true,
                "nullptr" => false,
                _ if lenient_cf.is_some() => continue,
                _ => {
                    return Err(err(
                        line_no,
                        format!(
                            "key '{PREFIX_EXTRACTOR}': '{value}' is not nullptr or \
                             {SCOPE_EXTRACTOR_NAME} (statekit models only its own extractor)"
                        ),
                    ))
                }
            };
            (SCOPE_PREFIX_FILTER.to_string(), Value::Bool(on))
        } else if !is_table && key == MEMTABLE_FACTORY {
            match parse_memtable_factory(value) {
                // RocksDB writes its default into every file: leave it unset.
                Some(0) if lenient_cf.is_some() => continue,
                Some(buckets) => (HASH_SKIPLIST_BUCKETS.to_string(), Value::from(buckets)),
                None if lenient_cf.is_some() => continue,
                None => {
                    return Err(err(
                        line_no,
                        format!(
                            "key '{MEMTABLE_FACTORY}': '{value}' is not {SKIPLIST_FACTORY} or \
                             {{id={HASH_SKIPLIST_ID};bucket_count=<n>;...}} (statekit models \
                             only these)"
                        ),
                    ))
                }
            }
        } else if is_table && key == FILTER_POLICY {
            match parse_filter_policy(value) {
                Some(v) => (BLOOM_BITS.to_string(), v),
                None if lenient_cf.is_some() => continue,
                None => {
                    return Err(err(
                        line_no,
                        format!(
                            "key '{FILTER_POLICY}': '{value}' is not bloomfilter:<bits>:false \
                             or nullptr"
                        ),
                    ))
                }
            }
        } else if is_table && key == METADATA_CACHE {
            // `{top_level_index_pinning=kFallback;partition_pinning=...;unpartitioned_pinning=...;}`:
            // statekit models the last.
            let fields = value.trim_start_matches('{').trim_end_matches('}');
            let tier = fields
                .split(';')
                .filter_map(|f| f.split_once('='))
                .find(|(k, _)| k.trim() == UNPARTITIONED_PINNING);
            match tier {
                Some((_, tier)) => (
                    UNPARTITIONED_PINNING.to_string(),
                    Value::String(tier.trim().to_string()),
                ),
                None => continue,
            }
        } else {
            (key.to_string(), guess_value(key, value))
        };
        target.entries.push((key, value, line_no));
    }
    let lenient = lenient_cf.is_some();
    let mut config = RocksDbConfig {
        db: build::<DbOptions>(&db, source, lenient)?,
        cf: build::<CfOptions>(&cf, source, lenient)?,
        table: build::<TableOptions>(&table, source, lenient)?,
        ..RocksDbConfig::default()
    };
    for (name, (cf, table)) in states {
        // A state's sections list every option it runs with; keep what differs.
        let state = StateOptions {
            cf: difference(&config.cf, &build::<CfOptions>(&cf, source, lenient)?),
            table: difference(
                &config.table,
                &build::<TableOptions>(&table, source, lenient)?,
            ),
        };
        if state != StateOptions::default() {
            config.states.insert(name, state);
        }
    }
    config.validate().map_err(|e| e.context(source))?;
    Ok(config)
}

/// The buckets of a `memtable_factory` value: 0 for RocksDB's skip list, `n` for a hash of
/// skip lists with `n` buckets, `None` for any other representation.
fn parse_memtable_factory(value: &str) -> Option<u64> {
    let inner = value.trim().trim_start_matches('{').trim_end_matches('}');
    let fields: Vec<(&str, &str)> = inner
        .split(';')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let id = fields
        .iter()
        .find(|(k, _)| *k == "id")
        .map_or(inner.trim(), |(_, v)| v);
    match id {
        SKIPLIST_FACTORY => Some(0),
        HASH_SKIPLIST_ID => fields
            .iter()
            .find(|(k, _)| *k == "bucket_count")
            .and_then(|(_, v)| v.parse().ok())
            .filter(|n| *n > 0),
        _ => None,
    }
}

/// RocksDB's escaping of names in section headers.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ':' | '\\' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes RocksDB's escaping of names in section headers (`state\:s` is `state:s`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn parse_filter_policy(value: &str) -> Option<Value> {
    if value == "nullptr" || value.is_empty() {
        return Some(Value::Null);
    }
    let rest = value.strip_prefix("bloomfilter:")?;
    let bits: f64 = rest.split(':').next()?.parse().ok()?;
    serde_json::Number::from_f64(bits).map(Value::Number)
}

/// The JSON value of an option's text: lists are colon separated, the rest is typed by
/// what it parses as; the section struct then checks the type per key.
fn guess_value(key: &str, value: &str) -> Value {
    if key == "compression_per_level" {
        return Value::Array(
            value
                .split(':')
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        );
    }
    match value {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = value.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = value.parse::<u64>() {
        return Value::from(u);
    }
    if let Some(n) = value
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(value.to_string())
}

/// Deserializes a section, one key at a time so that an error names its key and line.
fn build<T: DeserializeOwned + Default>(
    collected: &Collected,
    source: &str,
    lenient: bool,
) -> Result<T> {
    let mut all = Map::new();
    for (key, value, line) in &collected.entries {
        let mut one = Map::new();
        one.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
            // RocksDB's own files hold valid values only; one statekit cannot represent (an
            // option it does not model, or a sentinel such as kDisableCompressionOption)
            // stays unset, which means RocksDB's default.
            if lenient {
                continue;
            }
            return Err(Error::invalid(format!("{source}:{line}: key '{key}': {e}")));
        }
        all.insert(key.clone(), value.clone());
    }
    serde_json::from_value(Value::Object(all)).map_err(|e| Error::invalid(format!("{source}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::{PinningTier, Preset};
    use super::*;

    #[test]
    fn every_preset_round_trips_through_an_options_file() {
        for preset in Preset::all() {
            let config = RocksDbConfig::preset(preset);
            let text = config.to_options_string().unwrap();
            let back = RocksDbConfig::from_options_str(&text, "OPTIONS").unwrap();
            // The `[backend]` section is not RocksDB's: OPTIONS files leave it out.
            let config = RocksDbConfig {
                backend: Default::default(),
                ..config
            };
            assert_eq!(back, config, "{preset:?}\n{text}");
        }
    }

    #[test]
    fn pinning_tier_round_trips_as_rocksdb_nests_it() {
        let mut config = RocksDbConfig::default();
        config.table.unpartitioned_pinning = Some(PinningTier::All);
        let text = config.to_options_string().unwrap();
        assert!(
            text.contains("metadata_cache_options={unpartitioned_pinning=kAll;}"),
            "{text}"
        );
        let back = RocksDbConfig::from_options_str(&text, "OPTIONS").unwrap();
        assert_eq!(back, config);
        // As RocksDB writes it.
        let written = text.replace(
            "{unpartitioned_pinning=kAll;}",
            "{top_level_index_pinning=kFallback;partition_pinning=kFallback;unpartitioned_pinning=kAll;}",
        );
        let back = RocksDbConfig::from_options_str(&written, "OPTIONS").unwrap();
        assert_eq!(back, config);
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_itself_accepts_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let load = || {
            ::rocksdb::Options::load_latest(
                dir.path(),
                ::rocksdb::Env::new().unwrap(),
                false,
                ::rocksdb::Cache::new_lru_cache(1 << 20),
            )
        };
        for (i, preset) in Preset::all().into_iter().enumerate() {
            let mut config = RocksDbConfig::preset(preset);
            config.db.use_direct_reads = Some(false);
            config.table.index_type = Some(super::super::IndexType::BinarySearch);
            config.table.unpartitioned_pinning = Some(PinningTier::All);
            let path = dir.path().join(format!("OPTIONS-{:06}", i + 1));
            config.write_options_file(&path).unwrap();
            let (opts, cfs) = load().unwrap_or_else(|e| panic!("{preset:?}: {e}"));
            drop(opts);
            assert_eq!(cfs.len(), 1);
            std::fs::remove_file(&path).unwrap();
        }
        // A state's hash memtable and the default skip list, as statekit writes them.
        hashed_left(1024)
            .write_options_file(&dir.path().join("OPTIONS-000001"))
            .unwrap();
        let (_, cfs) = load().unwrap_or_else(|e| panic!("hash memtable: {e}"));
        assert_eq!(cfs.len(), 2);
    }

    #[test]
    fn per_state_sections_round_trip() {
        let mut config = RocksDbConfig::preset(Preset::FlinkSpinningDiskOptimizedHighMem);
        // The `[backend]` section is not RocksDB's: OPTIONS files leave it out.
        config.backend = Default::default();
        config.states.insert(
            "left:buffer".into(),
            StateOptions {
                cf: CfOptions {
                    write_buffer_size: Some(8 << 20),
                    memtable_max_range_deletions: Some(1000),
                    ..CfOptions::default()
                },
                table: TableOptions {
                    bloom_filter_bits_per_key: Some(14.0),
                    ..TableOptions::default()
                },
            },
        );
        let text = config.to_options_string().unwrap();
        // RocksDB's escaping of the column family name, every option the state runs with.
        assert!(
            text.contains("[CFOptions \"state\\:left\\:buffer\"]"),
            "{text}"
        );
        assert!(
            text.contains("[TableOptions/BlockBasedTable \"state\\:left\\:buffer\"]"),
            "{text}"
        );
        let back = RocksDbConfig::from_options_str(&text, "OPTIONS").unwrap();
        assert_eq!(back, config, "{text}");
        for state in ["left:buffer", "other"] {
            assert_eq!(back.for_state(state), config.for_state(state));
        }
        assert_eq!(
            config.for_state("left:buffer").0.write_buffer_size,
            Some(8 << 20)
        );
        assert_eq!(
            config
                .for_state("left:buffer")
                .0
                .min_write_buffer_number_to_merge,
            Some(3),
            "unset options of a state take the defaults"
        );
        let msg = RocksDbConfig::from_options_str("[CFOptions \"state\\:\"]\n", "O")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("O:1") && msg.contains("names no state"),
            "{msg}"
        );
    }

    /// State `left` with a hash memtable of `buckets` buckets, the others the skip list.
    fn hashed_left(buckets: u64) -> RocksDbConfig {
        let mut config = RocksDbConfig::default();
        config.db.allow_concurrent_memtable_write = Some(false);
        config.cf.hash_skiplist_buckets = Some(0);
        let left = config.states.entry("left".into()).or_default();
        left.cf.hash_skiplist_buckets = Some(buckets);
        config
    }

    #[test]
    fn hash_memtables_round_trip_as_rocksdb_names_them() {
        let config = hashed_left(200_000);
        let text = config.to_options_string().unwrap();
        assert!(
            text.contains("  memtable_factory=SkipListFactory\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "memtable_factory={id=HashSkipListRepFactory;bucket_count=200000;\
                 skiplist_height=4;branching_factor=4}"
            ),
            "{text}"
        );
        let back = RocksDbConfig::from_options_str(&text, "OPTIONS").unwrap();
        assert_eq!(back, config, "{text}");
        // RocksDB writes its default skip list into every file: read leniently, it is unset.
        let lenient = RocksDbConfig::from_rocksdb_options_str(&text, "OPTIONS", "default").unwrap();
        assert_eq!(lenient.cf.hash_skiplist_buckets, None);
        let msg = RocksDbConfig::from_options_str(
            "[CFOptions \"default\"]\n  memtable_factory=VectorRepFactory\n",
            "OPTIONS",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("OPTIONS:2") && msg.contains("memtable_factory"),
            "{msg}"
        );
    }

    #[test]
    fn a_hash_memtable_needs_scopes_one_writer_and_a_sane_bucket_count() {
        let mut config = RocksDbConfig::default();
        config.cf.hash_skiplist_buckets = Some(1024);
        let msg = config.validate().unwrap_err().to_string();
        assert!(msg.contains("db.allow_concurrent_memtable_write"), "{msg}");
        config.db.allow_concurrent_memtable_write = Some(false);
        config.validate().unwrap();
        let plain = config.states.entry("plain".into()).or_default();
        plain.cf.scope_prefix_filter = Some(false);
        let msg = config.validate().unwrap_err().to_string();
        assert!(
            msg.contains("states.plain.cf.hash_skiplist_buckets")
                && msg.contains("scope_prefix_filter"),
            "{msg}"
        );
        config.states.clear();
        config.cf.hash_skiplist_buckets = Some(super::super::MAX_HASH_SKIPLIST_BUCKETS + 1);
        let msg = config.validate().unwrap_err().to_string();
        assert!(msg.contains("cf.hash_skiplist_buckets"), "{msg}");
    }

    /// Every truncation and a sweep of single-byte damage of a full OPTIONS file (with
    /// per-state sections) either parses or is an error naming the file, never a panic. (A
    /// text file carries no checksum: a damaged digit can still be a valid number.)
    #[test]
    fn damaged_options_files_never_panic_and_errors_name_the_file() {
        let mut config = RocksDbConfig::preset(Preset::FlinkDefault);
        config.states.insert(
            "join/left".into(),
            crate::rocksdb_config::StateOptions::default(),
        );
        let text = config.to_options_string().unwrap();
        let check = |damaged: &[u8], what: &str| {
            let damaged = String::from_utf8_lossy(damaged);
            if let Err(e) = RocksDbConfig::from_options_str(&damaged, "/etc/job/OPTIONS") {
                assert!(e.to_string().contains("/etc/job/OPTIONS"), "{what}: {e}");
            }
        };
        for cut in 0..text.len() {
            check(&text.as_bytes()[..cut], &format!("cut at {cut}"));
        }
        for at in (0..text.len()).step_by(3) {
            for byte in [b'=', b'[', b'"', b'\n', b'9', 0xff] {
                let mut damaged = text.as_bytes().to_vec();
                damaged[at] = byte;
                check(&damaged, &format!("byte {at} = {byte:#x}"));
            }
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text =
            "[Version]\n  options_file_version=1.1\n[DBOptions]\n  max_background_jobs=4\n  \
                    max_backgroud_jobs=2\n";
        let e = RocksDbConfig::from_options_str(text, "/etc/job/OPTIONS").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/etc/job/OPTIONS:5") && msg.contains("max_backgroud_jobs"),
            "{msg}"
        );
        let text = "[CFOptions \"default\"]\n  write_buffer_size=lots\n";
        let msg = RocksDbConfig::from_options_str(text, "O")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("O:2") && msg.contains("write_buffer_size"),
            "{msg}"
        );
        let text = "[CFOptions \"default\"]\n  compression=kFancy\n";
        let msg = RocksDbConfig::from_options_str(text, "O")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("O:2") && msg.contains("compression"), "{msg}");
        let msg = RocksDbConfig::from_options_str("[Nope]\n", "O")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("O:1") && msg.contains("Nope"), "{msg}");
        let text = "[CFOptions \"default\"]\n  prefix_extractor=rocksdb.FixedPrefix.8\n";
        let msg = RocksDbConfig::from_options_str(text, "O")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("O:2")
                && msg.contains("is not nullptr or statekit.scope (statekit models"),
            "{msg}"
        );
        let text = "[CFOptions \"default\"]\n  prefix_extractor=nullptr\n";
        let off = RocksDbConfig::from_options_str(text, "O").unwrap();
        assert_eq!(off.cf.scope_prefix_filter, Some(false));
        let msg = RocksDbConfig::from_options_str("a=b\n", "O")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("O:1"), "{msg}");
    }
}
