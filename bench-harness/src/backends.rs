//! Picking a backend at run time: `--backend memory|rocksdb|remote` plus an optional
//! configuration, opened as a `Box<dyn StateBackend>`. Adding a backend is one enum variant,
//! its name, and one arm in [`open_backend`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use statekit_backend::memory::MemoryBackend;
use statekit_backend::{Error, InstanceConfig, Result, StateBackend};

/// Whether this build can open the RocksDB backend (feature `rocksdb`).
pub const ROCKSDB_AVAILABLE: bool = cfg!(feature = "rocksdb");

/// Whether this build can open the remote-object backend (feature `remote`).
pub const REMOTE_AVAILABLE: bool = cfg!(feature = "remote");

/// The backends the harness can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Everything on the heap.
    Memory,
    /// Embedded RocksDB (feature `rocksdb`).
    Rocksdb,
    /// State in object storage (feature `remote`).
    Remote,
}

impl BackendKind {
    /// Every backend this build can open (memory always; RocksDB and remote with their
    /// features).
    pub fn available() -> Vec<BackendKind> {
        let mut kinds = vec![BackendKind::Memory];
        if ROCKSDB_AVAILABLE {
            kinds.push(BackendKind::Rocksdb);
        }
        if REMOTE_AVAILABLE {
            kinds.push(BackendKind::Remote);
        }
        kinds
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Rocksdb => "rocksdb",
            BackendKind::Remote => "remote",
        }
    }

    /// The backend of a command-line name.
    pub fn from_name(name: &str) -> Option<BackendKind> {
        [
            BackendKind::Memory,
            BackendKind::Rocksdb,
            BackendKind::Remote,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// Whether `--config` applies to this backend.
    pub fn takes_config(self) -> bool {
        !matches!(self, BackendKind::Memory)
    }
}

/// One backend/configuration pair of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSpec {
    /// The backend.
    pub kind: BackendKind,
    /// A preset name or a configuration file, for backends that take one; with `rocksdb`
    /// set, only the name of that configuration in reports.
    pub config: Option<String>,
    /// RocksDB options as data (a tuner's candidate, say), used instead of reading `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocksdb: Option<Box<statekit_backend::rocksdb_config::RocksDbConfig>>,
}

impl BackendSpec {
    /// The label of the pair in reports (`rocksdb/flink-default`).
    pub fn label(&self) -> String {
        match &self.config {
            Some(c) => {
                let short = Path::new(c)
                    .file_stem()
                    .map_or(c.clone(), |s| s.to_string_lossy().into_owned());
                format!("{}/{short}", self.kind.name())
            }
            None => self.kind.name().to_string(),
        }
    }

    /// The pairs of a comparison: every backend, and each backend that takes a configuration
    /// once per `--config` that applies to it (or once with its defaults if none does).
    /// `--config BACKEND=VALUE` (`rocksdb=flink-default`, `remote=s3.toml`) applies to that
    /// backend only; a value without a prefix applies to every backend that takes one.
    pub fn pairs(kinds: &[BackendKind], configs: &[String]) -> Vec<BackendSpec> {
        let mut out = Vec::new();
        for &kind in kinds {
            let mine: Vec<String> = if kind.takes_config() {
                configs
                    .iter()
                    .filter_map(|c| match c.split_once('=') {
                        Some((target, value)) if target == kind.name() => Some(value.to_string()),
                        Some((target, _)) if BackendKind::from_name(target).is_some() => None,
                        _ => Some(c.clone()),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if mine.is_empty() {
                out.push(BackendSpec {
                    kind,
                    config: None,
                    rocksdb: None,
                });
            } else {
                out.extend(mine.into_iter().map(|c| BackendSpec {
                    kind,
                    config: Some(c),
                    rocksdb: None,
                }));
            }
        }
        out
    }
}

/// What a backend is opened with besides its spec.
#[derive(Debug, Clone)]
pub struct OpenOptions<'a> {
    /// The instance configuration (key groups, checkpoint storage, clock).
    pub instance: InstanceConfig,
    /// A private working directory for the backend's files.
    pub work_dir: &'a Path,
    /// The memory budget, for backends that take one.
    pub memory_budget: Option<u64>,
    /// Read and compact with direct I/O (bypassing the page cache), so that the memory
    /// budget is real: used at scales that set a budget.
    pub direct_io: bool,
}

/// Opens the backend of `spec`.
///
/// # Errors
/// `InvalidArgument` for a backend this build lacks (naming the cargo feature to enable) or
/// a bad configuration; whatever opening the backend fails with.
pub fn open_backend(spec: &BackendSpec, options: OpenOptions<'_>) -> Result<Box<dyn StateBackend>> {
    match spec.kind {
        BackendKind::Memory => {
            if let Some(c) = &spec.config {
                return Err(Error::invalid(format!(
                    "the memory backend takes no configuration (got '{c}')"
                )));
            }
            Ok(Box::new(MemoryBackend::open(options.instance)?))
        }
        BackendKind::Rocksdb => open_rocksdb(spec, options),
        BackendKind::Remote => open_remote(spec, options),
    }
}

#[cfg(any(not(feature = "rocksdb"), not(feature = "remote")))]
fn not_built(feature: &str) -> Error {
    Error::invalid(format!(
        "this build of statekit lacks the '{feature}' backend; rebuild with `--features \
         {feature}` (the statekit tool: `cargo build --release -p statekit-cli --features \
         {feature}`; statekit-timely: `-p statekit-timely --features {feature}`)"
    ))
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb(_spec: &BackendSpec, _options: OpenOptions<'_>) -> Result<Box<dyn StateBackend>> {
    Err(not_built("rocksdb"))
}

#[cfg(not(feature = "remote"))]
fn open_remote(_spec: &BackendSpec, _options: OpenOptions<'_>) -> Result<Box<dyn StateBackend>> {
    Err(not_built("remote"))
}

/// The remote backend's configuration for a run: the `--config` TOML file if there is one,
/// else the embedded default; the store is in a directory under the run's working directory
/// (no server needed) unless the file names one (`url`). A memory budget covers the block
/// cache, the unflushed memtables and the compactor together
/// ([`statekit_backend::remote::RemoteConfig::fit_memory_budget`]), as RocksDB's covers its
/// cache and memtables.
///
/// # Errors
/// `InvalidArgument` naming the file and field of a bad configuration, or a preset name
/// (the remote backend has none).
#[cfg(feature = "remote")]
pub fn remote_config(
    value: Option<&str>,
    work_dir: &Path,
    memory_budget: Option<u64>,
) -> Result<statekit_backend::remote::RemoteConfig> {
    use statekit_backend::remote::RemoteConfig;
    // The run's own store: a directory under its working directory, removed with it. A
    // file:// URL needs an absolute path, and the directory must exist.
    let run_store = || -> Result<String> {
        let dir = std::path::absolute(work_dir.join("object-store"))
            .map_err(|e| Error::io(work_dir.display(), e))?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        Ok(RemoteConfig::local(&dir).url)
    };
    let mut config = match value {
        Some(v) if Path::new(v).is_file() => {
            let path = Path::new(v);
            let text = statekit_backend::config_file::read(path)?;
            let mut config = RemoteConfig::parse(path, &text)?;
            // A file that names no store would put every run's database under the library's
            // default, /tmp/statekit-remote, where nothing removes it: gigabytes per run.
            // It gets the run's own directory, as a run without a file does.
            let names_a_store = text
                .parse::<toml::Table>()
                .is_ok_and(|t| t.contains_key("url"));
            if !names_a_store {
                config.url = run_store()?;
            }
            config
        }
        Some(v) => {
            return Err(Error::invalid(format!(
                "remote backend configuration '{v}' is not a file: the remote backend takes a \
                 TOML file (see backend/src/remote/default.toml), not a preset"
            )))
        }
        None => RemoteConfig {
            url: run_store()?,
            ..RemoteConfig::default()
        },
    };
    if let Some(budget) = memory_budget {
        config.fit_memory_budget(budget);
    }
    config.validate()?;
    Ok(config)
}

#[cfg(feature = "remote")]
fn open_remote(spec: &BackendSpec, options: OpenOptions<'_>) -> Result<Box<dyn StateBackend>> {
    use statekit_backend::remote::RemoteBackend;
    let config = remote_config(
        spec.config.as_deref(),
        options.work_dir,
        options.memory_budget,
    )?;
    Ok(Box::new(RemoteBackend::open(options.instance, &config)?))
}

/// The RocksDB memory budget when none is given (Flink's managed memory per slot is of this
/// order).
pub const DEFAULT_ROCKSDB_BUDGET: u64 = 512 << 20;

/// The RocksDB options of a `--config` value: a preset name (`rocksdb-defaults`,
/// `flink-default`, `flink-spinning-disk-optimized`, `flink-spinning-disk-optimized-high-mem`,
/// `flink-flash-ssd-optimized`, `optimize-level-style-compaction`), a TOML file, or a RocksDB
/// `OPTIONS` file (`.ini` or a file named `OPTIONS*`).
///
/// # Errors
/// `InvalidArgument` naming the unknown preset or the file, line and key of a bad file.
#[cfg(feature = "rocksdb")]
pub fn rocksdb_config(
    value: &str,
    memory_budget: u64,
) -> Result<statekit_backend::rocksdb::RocksDbConfig> {
    use statekit_backend::rocksdb::{Preset, RocksDbConfig};
    let path = Path::new(value);
    if path.exists() || value.contains('/') || value.ends_with(".toml") || value.ends_with(".ini") {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return if value.ends_with(".ini") || name.starts_with("OPTIONS") {
            RocksDbConfig::read_options_file(path)
        } else {
            RocksDbConfig::load(path)
        };
    }
    let preset = match value.replace('_', "-").as_str() {
        "rocksdb-defaults" | "default" | "defaults" => Preset::RocksdbDefaults,
        "flink-default" => Preset::FlinkDefault,
        "flink-spinning-disk-optimized" => Preset::FlinkSpinningDiskOptimized,
        "flink-spinning-disk-optimized-high-mem" => Preset::FlinkSpinningDiskOptimizedHighMem,
        "flink-flash-ssd-optimized" => Preset::FlinkFlashSsdOptimized,
        // Memtables get the budget's write-buffer share, as with the resources.
        "optimize-level-style-compaction" => Preset::OptimizeLevelStyleCompaction {
            memtable_memory_budget: memory_budget / 3,
        },
        other => {
            return Err(Error::invalid(format!(
                "unknown RocksDB configuration '{other}': not a file, and not one of the presets \
                 rocksdb-defaults, flink-default, flink-spinning-disk-optimized, \
                 flink-spinning-disk-optimized-high-mem, flink-flash-ssd-optimized, \
                 optimize-level-style-compaction"
            )))
        }
    };
    Ok(RocksDbConfig::preset(preset))
}

/// Whether the backend of `spec`, opened with `options`, keeps its files out of the OS page
/// cache: direct I/O for reads *and* for flush and compaction writes. A configuration may turn
/// off either; direct reads alone still leave written files in the page cache, so they count
/// as not bypassing it.
///
/// # Errors
/// As [`open_backend`], for a bad configuration.
#[cfg_attr(not(feature = "rocksdb"), allow(unused_variables))]
pub fn bypasses_page_cache(spec: &BackendSpec, options: &OpenOptions<'_>) -> Result<bool> {
    match spec.kind {
        #[cfg(feature = "rocksdb")]
        BackendKind::Rocksdb => {
            let config = effective_rocksdb_config(spec, options)?;
            Ok(config.db.use_direct_reads == Some(true)
                && config.db.use_direct_io_for_flush_and_compaction == Some(true))
        }
        _ => Ok(false),
    }
}

/// The RocksDB options a run uses: the spec's configuration, with direct I/O where
/// `options` ask for it and the configuration does not say otherwise.
#[cfg(feature = "rocksdb")]
fn effective_rocksdb_config(
    spec: &BackendSpec,
    options: &OpenOptions<'_>,
) -> Result<statekit_backend::rocksdb::RocksDbConfig> {
    let budget = options.memory_budget.unwrap_or(DEFAULT_ROCKSDB_BUDGET);
    let mut config = match (&spec.rocksdb, &spec.config) {
        (Some(data), _) => {
            data.validate()?;
            (**data).clone()
        }
        (None, Some(value)) => rocksdb_config(value, budget)?,
        (None, None) => statekit_backend::rocksdb::RocksDbConfig::default(),
    };
    if options.direct_io {
        // A real memory budget: the page cache must not hold the state behind the budget's
        // back. A configuration that says otherwise wins.
        config.db.use_direct_reads.get_or_insert(true);
        config
            .db
            .use_direct_io_for_flush_and_compaction
            .get_or_insert(true);
    }
    Ok(config)
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(spec: &BackendSpec, options: OpenOptions<'_>) -> Result<Box<dyn StateBackend>> {
    use statekit_backend::rocksdb::{
        MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings,
    };
    let budget = options.memory_budget.unwrap_or(DEFAULT_ROCKSDB_BUDGET);
    let config = effective_rocksdb_config(spec, &options)?;
    std::fs::create_dir_all(options.work_dir)
        .map_err(|e| Error::io(options.work_dir.display(), e))?;
    let mut memory = MemoryBudget::new(budget);
    if let Some(ratio) = config.backend.write_buffer_ratio {
        memory.write_buffer_ratio = ratio;
    }
    let resources = RocksDbResources::new(memory)?;
    let settings = RocksDbSettings::new(options.work_dir, resources).with_config(config);
    Ok(Box::new(RocksDbBackend::open(options.instance, settings)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "remote")]
    #[test]
    fn a_remote_config_file_without_a_store_keeps_the_store_under_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let no_store = dir.path().join("no-store.toml");
        std::fs::write(&no_store, "block_cache = \"64 MiB\"\n").unwrap();
        let config = remote_config(no_store.to_str(), &work, None).unwrap();
        let expected = std::path::absolute(work.join("object-store")).unwrap();
        assert_eq!(config.url, format!("file://{}", expected.display()));
        assert_eq!(config.block_cache.0, 64 << 20);
        assert!(expected.is_dir());
        let named = dir.path().join("named.toml");
        std::fs::write(&named, "url = \"memory:///\"\n").unwrap();
        let config = remote_config(named.to_str(), &work, None).unwrap();
        assert_eq!(config.url, "memory:///");
    }

    #[test]
    fn pairs_apply_configs_to_configurable_backends_only() {
        let p = BackendSpec::pairs(
            &[BackendKind::Memory, BackendKind::Rocksdb],
            &["a".into(), "dir/b.toml".into()],
        );
        let labels: Vec<String> = p.iter().map(BackendSpec::label).collect();
        assert_eq!(labels, vec!["memory", "rocksdb/a", "rocksdb/b"]);
        let p = BackendSpec::pairs(&[BackendKind::Memory, BackendKind::Rocksdb], &[]);
        assert_eq!(p.len(), 2);
        let p = BackendSpec::pairs(
            &[BackendKind::Rocksdb, BackendKind::Remote],
            &["rocksdb=flink-default".into(), "remote=s3.toml".into()],
        );
        let labels: Vec<String> = p.iter().map(BackendSpec::label).collect();
        assert_eq!(labels, vec!["rocksdb/flink-default", "remote/s3"]);
    }

    #[test]
    fn memory_opens_and_rejects_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let opts = || OpenOptions {
            instance: InstanceConfig::single(16).unwrap(),
            work_dir: dir.path(),
            memory_budget: None,
            direct_io: false,
        };
        let b = open_backend(
            &BackendSpec {
                kind: BackendKind::Memory,
                config: None,
                rocksdb: None,
            },
            opts(),
        )
        .unwrap();
        assert_eq!(b.name(), "memory");
        let spec = BackendSpec {
            kind: BackendKind::Memory,
            config: Some("x".into()),
            rocksdb: None,
        };
        assert!(open_backend(&spec, opts()).is_err());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn direct_io_is_what_the_configuration_leaves_on() {
        let dir = tempfile::tempdir().unwrap();
        let buffered = dir.path().join("buffered.toml");
        std::fs::write(&buffered, "[db]\nuse_direct_reads = false\n").unwrap();
        // Direct reads but buffered flush and compaction: written files stay in the page cache.
        let reads_only = dir.path().join("reads-only.toml");
        std::fs::write(
            &reads_only,
            "[db]\nuse_direct_io_for_flush_and_compaction = false\n",
        )
        .unwrap();
        let opts = |direct_io| OpenOptions {
            instance: InstanceConfig::single(16).unwrap(),
            work_dir: dir.path(),
            memory_budget: Some(64 << 20),
            direct_io,
        };
        let spec = |kind, config: Option<&std::path::Path>| BackendSpec {
            kind,
            config: config.map(|p| p.display().to_string()),
            rocksdb: None,
        };
        assert!(bypasses_page_cache(&spec(BackendKind::Rocksdb, None), &opts(true)).unwrap());
        assert!(!bypasses_page_cache(&spec(BackendKind::Rocksdb, None), &opts(false)).unwrap());
        assert!(
            !bypasses_page_cache(&spec(BackendKind::Rocksdb, Some(&buffered)), &opts(true))
                .unwrap()
        );
        assert!(
            !bypasses_page_cache(&spec(BackendKind::Rocksdb, Some(&reads_only)), &opts(true))
                .unwrap()
        );
        assert!(!bypasses_page_cache(&spec(BackendKind::Remote, None), &opts(true)).unwrap());
    }
}
