//! Configuration of the remote backend, in the same TOML style as the other backends, and the
//! connection to the object store it names.
//!
//! Credentials never appear in the configuration: they come from the environment, read by
//! `object_store`'s builders (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_KEY`, ...). A URL that
//! carries a user or password is rejected, so neither `Debug` output nor error messages can
//! leak a secret.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::local_files::LocalFiles;
use crate::config_file::{self, FieldError};
use crate::error::{Error, ErrorKind, Result};
pub use crate::size::Size;

/// The example configuration (`backend/src/remote/default.toml`): every field commented out
/// at its default, so it parses to [`RemoteConfig::default`].
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Configuration of the remote backend, a TOML file of its own (`--config remote=FILE`).
/// Every field may be left out and then takes the default its doc names
/// ([`RemoteConfig::default`]); an unknown field is an error. Holds no secret: see the module
/// docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Where state lives: `file:///abs/dir`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`, or `memory:///` (a process-local store, for tests).
    /// Default `file:///tmp/statekit-remote`, a local directory: no server needed.
    pub url: String,
    /// A custom endpoint for S3-compatible servers (MinIO, moto, Ceph), e.g.
    /// `http://127.0.0.1:9000`. Default none: the provider's own.
    pub endpoint: Option<String>,
    /// The region (S3). Default none: the environment's `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (only sensible on loopback or inside a trusted network).
    /// Default false.
    pub allow_http: bool,
    /// In-memory cache of SST blocks, indexes and filters, shared by every instance opened
    /// through one [`RemoteStore`](super::RemoteStore). Default 256 MiB.
    pub block_cache: Size,
    /// The part of `block_cache` reserved for table indexes, Bloom filters and table stats
    /// (the rest holds data blocks). Default none: half of `block_cache`. Data blocks
    /// would otherwise evict indexes, and every miss re-reads and re-verifies a whole index,
    /// as RocksDB's high-priority pool for index and filter blocks avoids. Every read probes
    /// a filter per table it may touch, so the state's filters and indexes, which grow with
    /// it, are worth more than data blocks once the state dwarfs the cache: with a fifth,
    /// ad-click's large scale at 256 MiB fell from 15k to 3.8k events/s by 9M events, half
    /// its operator thread re-reading indexes; with half it ran 8.3k there with builds
    /// sharing the machine (12k with 64 KiB blocks as well, which feature-concat's point
    /// reads paid for). Feature-concat ran within noise with half.
    pub meta_cache: Option<Size>,
    /// Size of a table's data blocks: 1, 2, 4, 8, 16, 32 or 64 KiB. Default 16 KiB (SlateDB's
    /// is 4). A table's index holds a first key per block and a cache miss reads and
    /// verifies it whole, so small blocks give a large state indexes that no longer fit the
    /// cache: feature-concat at 256 MiB spent half its time verifying indexes and ran 2.3k
    /// events/s with 4 KiB blocks, 9.2k with 16 KiB; ad-click ran the same with either.
    pub block_size: Size,
    /// Whether tables' Bloom filters hold whole keys as well as scopes. Default false:
    /// scopes only, as the RocksDB backend's filters. Every read of a key/value state is a
    /// get or scan inside one scope, and a scope's keys (a key's lists or map entries) are
    /// many: with whole keys the filters of ad-click's large scale (a key per element) grew
    /// past the metadata cache at 256 MiB. Turn it on for map states read by point gets of
    /// user keys that are mostly absent. Tables written under the other setting are read
    /// without their filters until compaction rewrites them.
    pub whole_key_filter: bool,
    /// Size of a memtable before it is written to object storage as an L0 table. Default
    /// 64 MiB; at least 1 MiB.
    pub memtable: Size,
    /// Memory unflushed writes (active plus frozen memtables) may hold before writes wait
    /// for uploads: SlateDB's bound on their encoded bytes, and the backend's on their heap
    /// (key, value and about 160 bytes of memtable node per entry), whichever binds first.
    /// Default 256 MiB; at least `memtable`.
    pub max_unflushed: Size,
    /// Local directory of the optional on-disk cache of object-store data. Default none.
    pub disk_cache_dir: Option<PathBuf>,
    /// Budget of the on-disk cache; 0 disables it. Default 0.
    pub disk_cache: Size,
    /// How many object-store reads one `multi_get` or prefetch keeps in flight. Default 64;
    /// 1 to 4096.
    pub max_concurrent_reads: usize,
    /// Seconds a table that compaction replaced stays in the store, for reads that started
    /// before the compaction; then SlateDB's garbage collector deletes it. Tables a retained
    /// checkpoint needs stay regardless. Default 60. SlateDB keeps them 15 minutes (its
    /// compactor's checkpoint lifetime), which at standard ad-click rates held five times the
    /// live state in the store; reads in this process finish within seconds. Raise it when
    /// other processes read the databases directly.
    pub replaced_tables_kept_secs: u64,
    /// Memory the embedded compactor may hold: the output table it builds and the
    /// read-ahead of its inputs. Below 1 GiB one compaction runs at a time, unsplit, with
    /// output tables of half this size; from 1 GiB on, SlateDB's own settings (four at a
    /// time, four-way split, 256 MiB tables), which can hold over a gigabyte. Default 1 GiB;
    /// at least 8 MiB.
    pub compaction_memory: Size,
    /// Seconds a flush (a checkpoint's, the bound on unflushed writes, closing the database)
    /// may wait without the store completing a table write before it gives up with an
    /// error: a store that refuses writes (full, or unreachable beyond SlateDB's retries)
    /// must not hang the job, while a flush waiting behind compaction that keeps writing
    /// goes on. Default 120; at least 1.
    pub flush_timeout_secs: u64,
}

impl Default for RemoteConfig {
    /// The defaults every omitted field takes; `default.toml` shows them as comments.
    fn default() -> Self {
        RemoteConfig {
            url: "file:///tmp/statekit-remote".into(),
            endpoint: None,
            region: None,
            allow_http: false,
            block_cache: Size(256 << 20),
            meta_cache: None,
            block_size: Size(16 << 10),
            whole_key_filter: false,
            memtable: Size(64 << 20),
            max_unflushed: Size(256 << 20),
            disk_cache_dir: None,
            disk_cache: Size(0),
            max_concurrent_reads: 64,
            replaced_tables_kept_secs: 60,
            compaction_memory: Size(1 << 30),
            flush_timeout_secs: 120,
        }
    }
}

/// The share of a memory budget (one part in this many) that
/// [`RemoteConfig::fit_memory_budget`] leaves outside the cache, memtables and compactor, for
/// the buffers SlateDB holds while it uploads: a flushed memtable's encoded table, and the
/// 10 MiB parts of compaction output handed to the object store (the backend's statistics
/// show them as "uploads in flight"). Without it a 256 MiB run of the 3.7M-event ad-click
/// stream peaked 20-45 MiB above the budget rule (1.1 x budget + the harness's footprint)
/// in spikes of 50-100 MiB over its steady RSS; with it, below the rule.
pub const UPLOAD_RESERVE_DIVISOR: u64 = 8;

/// The schemes the remote backend can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A local (or mounted) directory.
    File,
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// A process-local in-memory store.
    Memory,
}

impl RemoteConfig {
    /// Sizes the memory this configuration may hold to `budget` bytes, as the RocksDB
    /// backend's budget does: unflushed memtables (what SlateDB holds before uploads
    /// complete) get a quarter, as many as four memtables of a quarter of that each; the
    /// compactor a quarter ([`RemoteConfig::compaction_memory`]); an eighth is left for
    /// SlateDB's upload buffers ([`UPLOAD_RESERVE_DIVISOR`]); the block cache gets the rest
    /// (three eighths), of which the metadata part stays half unless the configuration
    /// set it. Without this only the cache would count, and a "256 MiB" remote run could
    /// hold 256 MiB more in memtables and a gigabyte in compactions.
    pub fn fit_memory_budget(&mut self, budget: u64) {
        // Compaction holds a table being built and its inputs' read-ahead: with SlateDB's
        // defaults that is over a gigabyte, outside any cache, and a 256 MiB run peaked at
        // 572 MiB. It gets a quarter; unflushed memtables a quarter; the cache the rest.
        let compaction = (budget / 4).max(8 << 20);
        let unflushed = (budget / 4).max(2 << 20);
        let uploads = budget / UPLOAD_RESERVE_DIVISOR;
        self.compaction_memory = Size(compaction);
        self.max_unflushed = Size(unflushed);
        self.memtable = Size((unflushed / 4).max(1 << 20));
        self.block_cache = Size(
            budget
                .saturating_sub(unflushed + compaction + uploads)
                .max(1 << 20),
        );
        if let Some(meta) = self.meta_cache {
            self.meta_cache = Some(Size(meta.0.min(self.block_cache.0 / 2)));
        }
    }

    /// Parses and validates `text`, the contents of the TOML file `path` (named in errors).
    ///
    /// # Errors
    /// `InvalidArgument` naming the file, line, column and field of a syntax error, an unknown
    /// field, a value of the wrong type or a value out of range.
    pub fn parse(path: &FsPath, text: &str) -> Result<Self> {
        let config: RemoteConfig = config_file::parse(path, text)?;
        config.check().map_err(|e| e.at(path, text))?;
        Ok(config)
    }

    /// Reads and validates the TOML file at `path`.
    ///
    /// # Errors
    /// An I/O error naming the file, or as [`RemoteConfig::parse`].
    pub fn load(path: &FsPath) -> Result<Self> {
        Self::parse(path, &config_file::read(path)?)
    }

    /// The default configuration with state under the local directory `dir`.
    pub fn local(dir: &FsPath) -> Self {
        RemoteConfig {
            url: format!("file://{}", dir.display()),
            ..RemoteConfig::default()
        }
    }

    /// The parsed URL and its scheme.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed URL or an unsupported scheme.
    pub fn parsed_url(&self) -> Result<(url::Url, Scheme)> {
        self.url_and_scheme().map_err(Error::from)
    }

    fn url_and_scheme(&self) -> std::result::Result<(url::Url, Scheme), FieldError> {
        let bad = |message: String| FieldError::new("url", message);
        let url = url::Url::parse(&self.url).map_err(|e| bad(format!("'{}': {e}", self.url)))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "must not carry credentials; set them in the environment \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...)"
                    .into(),
            ));
        }
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "abfs" | "abfss" => Scheme::Azure,
            "memory" => Scheme::Memory,
            other => {
                return Err(bad(format!(
                    "'{}': unsupported scheme '{other}' (use file, s3, gs, az or memory)",
                    self.url
                )))
            }
        };
        if matches!(scheme, Scheme::S3 | Scheme::Gcs | Scheme::Azure)
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(bad(format!("'{}' names no bucket or container", self.url)));
        }
        if scheme == Scheme::File && url.to_file_path().is_err() {
            return Err(bad(format!(
                "'{}' is not an absolute file path (write file:///abs/dir)",
                self.url
            )));
        }
        Ok((url, scheme))
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the accepted values.
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|e| Error::from(e).context("remote backend configuration"))
    }

    /// What [`RemoteConfig::validate`] checks, with the field each error concerns, so a file
    /// reader can point at its line.
    fn check(&self) -> std::result::Result<(), FieldError> {
        let (_, scheme) = self.url_and_scheme()?;
        if let Some(endpoint) = &self.endpoint {
            let bad = |message: String| FieldError::new("endpoint", message);
            let parsed =
                url::Url::parse(endpoint).map_err(|e| bad(format!("'{endpoint}': {e}")))?;
            if scheme != Scheme::S3 && scheme != Scheme::Azure {
                return Err(bad(format!(
                    "is only used with s3:// or az:// URLs, not '{}'",
                    self.url
                )));
            }
            if parsed.scheme() == "http" && !self.allow_http {
                return Err(bad(format!(
                    "'{endpoint}' is plain HTTP; set allow_http = true to allow it"
                )));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(bad("must not carry credentials".into()));
            }
        }
        if let Some(meta) = self.meta_cache {
            if meta >= self.block_cache {
                return Err(FieldError::new(
                    "meta_cache",
                    format!("{meta} must be below block_cache = {}", self.block_cache),
                ));
            }
        }
        if self.sst_block_size().is_none() {
            return Err(FieldError::new(
                "block_size",
                format!(
                    "{} is not one of 1, 2, 4, 8, 16, 32 or 64 KiB",
                    self.block_size
                ),
            ));
        }
        if self.flush_timeout_secs == 0 {
            return Err(FieldError::new("flush_timeout_secs", "must be at least 1"));
        }
        const MIB: u64 = 1 << 20;
        if self.compaction_memory.0 < 8 * MIB {
            return Err(FieldError::new(
                "compaction_memory",
                format!("{} is below the minimum of 8 MiB", self.compaction_memory),
            ));
        }
        if self.memtable.0 < MIB {
            return Err(FieldError::new(
                "memtable",
                format!("{} is below the minimum of 1 MiB", self.memtable),
            ));
        }
        if self.max_unflushed < self.memtable {
            return Err(FieldError::new(
                "max_unflushed",
                format!(
                    "{} must be at least memtable = {}",
                    self.max_unflushed, self.memtable
                ),
            ));
        }
        if self.disk_cache.0 > 0 && self.disk_cache_dir.is_none() {
            return Err(FieldError::new(
                "disk_cache",
                "is set but disk_cache_dir is not",
            ));
        }
        if self.max_concurrent_reads == 0 || self.max_concurrent_reads > 4096 {
            return Err(FieldError::new(
                "max_concurrent_reads",
                format!("{} is outside 1..=4096", self.max_concurrent_reads),
            ));
        }
        Ok(())
    }

    /// `block_size` as SlateDB names it, if it is one SlateDB supports.
    pub(crate) fn sst_block_size(&self) -> Option<slatedb::config::SstBlockSize> {
        use slatedb::config::SstBlockSize as B;
        Some(match self.block_size.0 {
            0x400 => B::Block1Kib,
            0x800 => B::Block2Kib,
            0x1000 => B::Block4Kib,
            0x2000 => B::Block8Kib,
            0x4000 => B::Block16Kib,
            0x8000 => B::Block32Kib,
            0x10000 => B::Block64Kib,
            _ => return None,
        })
    }

    /// The split of `block_cache`: (data blocks, indexes + filters + stats).
    pub fn cache_split(&self) -> (u64, u64) {
        let meta = self.meta_cache.map_or(self.block_cache.0 / 2, |m| m.0);
        (self.block_cache.0 - meta, meta)
    }

    /// The URL as printed in messages and manifests (it holds no credentials).
    pub fn describe(&self) -> String {
        self.url.clone()
    }

    /// Builds the object store the URL names, with credentials from the environment, and the
    /// path inside it under which everything goes.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad configuration; an I/O error if a local directory cannot be
    /// created.
    pub fn build_object_store(&self) -> Result<(Arc<dyn ObjectStore>, Path)> {
        self.validate()?;
        let (url, scheme) = self.parsed_url()?;
        let prefix = || {
            Path::parse(url.path().trim_matches('/'))
                .map_err(|e| Error::invalid(format!("remote.url '{}': bad path: {e}", self.url)))
        };
        let bad = |e: object_store::Error| {
            Error::invalid(format!("remote.url '{}': {e}", self.url)).with_source(e)
        };
        let host = url.host_str().unwrap_or_default().to_string();
        match scheme {
            Scheme::File => {
                let dir = url.to_file_path().map_err(|()| {
                    Error::invalid(format!("remote.url '{}' is not a path", self.url))
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(bad)?
                    .with_automatic_cleanup(true);
                Ok((Arc::new(LocalFiles::new(store)), Path::default()))
            }
            Scheme::Memory => Ok((Arc::new(object_store::memory::InMemory::new()), prefix()?)),
            Scheme::S3 => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(host)
                    .with_allow_http(self.allow_http);
                if let Some(region) = &self.region {
                    b = b.with_region(region);
                }
                if let Some(endpoint) = &self.endpoint {
                    // S3-compatible servers on an IP or a single host name want path-style
                    // requests.
                    b = b
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                Ok((Arc::new(b.build().map_err(bad)?), prefix()?))
            }
            Scheme::Gcs => {
                let b =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(host);
                Ok((Arc::new(b.build().map_err(bad)?), prefix()?))
            }
            Scheme::Azure => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(host)
                    .with_allow_http(self.allow_http);
                if let Some(endpoint) = &self.endpoint {
                    b = b.with_endpoint(endpoint.clone());
                }
                Ok((Arc::new(b.build().map_err(bad)?), prefix()?))
            }
        }
    }
}

/// Classifies an `object_store` error by what the caller can do about it, naming `what`.
pub(crate) fn store_error(what: impl fmt::Display, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let kind = match &e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidArgument,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::InvalidArgument,
        E::NotSupported { .. } | E::NotImplemented { .. } => ErrorKind::Incompatible,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_budget_covers_cache_memtables_and_compaction() {
        let mut c = RemoteConfig::default();
        c.fit_memory_budget(256 << 20);
        assert_eq!(c.max_unflushed.0, 64 << 20);
        assert_eq!(c.memtable.0, 16 << 20);
        assert_eq!(c.compaction_memory.0, 64 << 20);
        assert_eq!(c.block_cache.0, 96 << 20);
        // An eighth stays outside every part, for uploads in flight.
        assert_eq!(
            c.block_cache.0 + c.max_unflushed.0 + c.compaction_memory.0,
            224 << 20
        );
        c.validate().unwrap();
        // A tiny budget still gives a valid configuration.
        c.fit_memory_budget(4 << 20);
        c.validate().unwrap();
    }

    fn parse(text: &str) -> Result<RemoteConfig> {
        RemoteConfig::parse(FsPath::new("store.toml"), text)
    }

    /// Fields whose default is none: the example shows them with a sample value.
    const NO_DEFAULT: [&str; 4] = ["endpoint", "region", "meta_cache", "disk_cache_dir"];

    /// The example with every `# field = value` line of a field with a default uncommented.
    fn uncommented(example: &str) -> String {
        example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| is_key(k) && !NO_DEFAULT.contains(&k)) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn is_key(word: &str) -> bool {
        !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    }

    #[test]
    fn the_example_shows_every_default() {
        assert_eq!(parse(DEFAULT_TOML).unwrap(), RemoteConfig::default());
        let text = uncommented(DEFAULT_TOML);
        assert_eq!(parse(&text).unwrap(), RemoteConfig::default(), "{text}");
        // Every field with a default is written; the others are shown with a sample.
        let defaults = toml::to_string(&RemoteConfig::default()).unwrap();
        for line in defaults.lines().chain(NO_DEFAULT) {
            let field = line.split(" = ").next().unwrap_or_default();
            assert!(
                DEFAULT_TOML.contains(&format!("\n# {field} = ")),
                "default.toml does not show {field}"
            );
        }
    }

    #[test]
    fn a_minimal_s3_file_takes_defaults_for_the_rest() {
        let c = parse(
            "url = \"s3://bucket/state\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"us-east-1\"\nallow_http = true\nblock_cache = \"64 MiB\"\n",
        )
        .unwrap();
        assert_eq!(c.parsed_url().unwrap().1, Scheme::S3);
        assert_eq!(c.block_cache, Size(64 << 20));
        assert_eq!(c.memtable, RemoteConfig::default().memtable);
        assert_eq!(c.max_concurrent_reads, 64);
        assert_eq!(parse("").unwrap(), RemoteConfig::default());
    }

    #[test]
    fn the_cache_split_reserves_half_for_metadata() {
        let c = RemoteConfig::default();
        assert_eq!(c.cache_split(), (128 << 20, 128 << 20));
        let explicit = RemoteConfig {
            meta_cache: Some(Size(16 << 20)),
            ..c.clone()
        };
        assert_eq!(explicit.cache_split(), (240 << 20, 16 << 20));
        let too_big = RemoteConfig {
            meta_cache: Some(c.block_cache),
            ..c
        };
        let e = too_big.validate().unwrap_err();
        assert!(e.to_string().contains("field `meta_cache`"), "{e}");
    }

    #[test]
    fn bad_configurations_name_file_line_and_field() {
        let base = "url = \"s3://bucket/state\"\n";
        let check = |text: &str, wanted: &[&str]| {
            let e = parse(text).unwrap_err().to_string();
            for w in wanted {
                assert!(e.contains(w), "{e} lacks {w}");
            }
            e
        };
        let e = check(
            "url = \"s3://AKIA:hunter2@bucket\"\n",
            &["store.toml:1:7: field `url`", "must not carry credentials"],
        );
        assert!(!e.contains("hunter2"), "{e}");
        check(
            &format!("{base}endpoint = \"http://127.0.0.1:9000\"\n"),
            &["store.toml:2:12: field `endpoint`", "allow_http"],
        );
        check(
            &format!("{base}blok_cache = \"1 GiB\"\n"),
            &["store.toml:2:1: field `blok_cache`", "unknown field"],
        );
        check(
            &format!("{base}memtable = \"4 KiB\"\n"),
            &["store.toml:2:12: field `memtable`", "minimum of 1 MiB"],
        );
        check(
            &format!("{base}block_size = \"12 KiB\"\n"),
            &[
                "store.toml:2:14: field `block_size`",
                "not one of 1, 2, 4, 8, 16, 32 or 64 KiB",
            ],
        );
        check(
            &format!("{base}memtable = \"4 furlongs\"\n"),
            &["store.toml:2:12: field `memtable`", "not a size"],
        );
        check(
            "url = \"ftp://host/x\"\n",
            &["field `url`", "unsupported scheme"],
        );
        check(
            "url = \"file://fileserver/share\"\n",
            &["field `url`", "absolute file path"],
        );
    }
}
