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
use std::str::FromStr;
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::local_files::LocalFiles;
use crate::error::{Error, ErrorKind, Result};

/// The embedded default configuration (a local directory).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A size in bytes, written in TOML as an integer or a string with a unit ("256 MiB", "1 GiB",
/// "64 KB").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "SizeRepr", into = "String")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for Size {
    type Error = String;
    fn try_from(repr: SizeRepr) -> std::result::Result<Self, String> {
        match repr {
            SizeRepr::Int(n) => Ok(Size(n)),
            SizeRepr::Text(s) => s.parse(),
        }
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a size (expected for example \"256 MiB\")"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            "tb" => 1_000_000_000_000,
            "tib" | "t" => 1 << 40,
            other => return Err(format!("'{s}': unknown size unit '{other}'")),
        };
        let bytes = num * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("'{s}' is out of range"));
        }
        Ok(Size(bytes as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (mult, unit) in units {
            if self.0 >= mult && self.0 % mult == 0 {
                return write!(f, "{} {unit}", self.0 / mult);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl From<Size> for String {
    fn from(s: Size) -> String {
        s.to_string()
    }
}

/// Configuration of the remote backend (`[remote]` in a statekit TOML file, or a file of its
/// own). Holds no secret: see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Where state lives: `file:///abs/dir`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`, or `memory:///` (a process-local store, for tests).
    pub url: String,
    /// A custom endpoint for S3-compatible servers (MinIO, moto, Ceph), e.g.
    /// `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region (S3); defaults to the environment's `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (only sensible on loopback or inside a trusted network).
    #[serde(default)]
    pub allow_http: bool,
    /// In-memory cache of SST blocks, indexes and filters, shared by every instance opened
    /// through one [`RemoteStore`].
    pub block_cache: Size,
    /// The part of `block_cache` reserved for table indexes, Bloom filters and table stats
    /// (the rest holds data blocks); default a fifth. Data blocks would otherwise evict
    /// indexes, and every miss re-reads and re-verifies a whole index, as RocksDB's
    /// high-priority pool for index and filter blocks avoids.
    #[serde(default)]
    pub meta_cache: Option<Size>,
    /// Size of a memtable before it is written to object storage as an L0 table.
    pub memtable: Size,
    /// Unflushed bytes (active plus frozen memtables) beyond which writes wait for uploads.
    pub max_unflushed: Size,
    /// Local directory of the optional on-disk cache of object-store data.
    #[serde(default)]
    pub disk_cache_dir: Option<PathBuf>,
    /// Budget of the on-disk cache; 0 disables it.
    #[serde(default = "zero_size")]
    pub disk_cache: Size,
    /// How many object-store reads one `multi_get` or prefetch keeps in flight.
    pub max_concurrent_reads: usize,
    /// Seconds a table that compaction replaced stays in the store, for reads that started
    /// before the compaction; then SlateDB's garbage collector deletes it. Tables a retained
    /// checkpoint needs stay regardless. SlateDB keeps them 15 minutes (its compactor's
    /// checkpoint lifetime), which at standard ad-click rates held five times the live state
    /// in the store; reads in this process finish within seconds. Raise it when other
    /// processes read the databases directly.
    #[serde(default = "default_replaced_tables_kept_secs")]
    pub replaced_tables_kept_secs: u64,
}

fn default_replaced_tables_kept_secs() -> u64 {
    60
}

fn zero_size() -> Size {
    Size(0)
}

impl Default for RemoteConfig {
    /// The embedded default ([`DEFAULT_TOML`]): a local directory, no server needed.
    fn default() -> Self {
        // The embedded file is checked by a unit test, so it always parses; the fallback
        // keeps this infallible without a panic path.
        RemoteConfig::from_toml_str(DEFAULT_TOML).unwrap_or(RemoteConfig {
            url: "file:///tmp/statekit-remote".into(),
            endpoint: None,
            region: None,
            allow_http: false,
            block_cache: Size(256 << 20),
            meta_cache: None,
            memtable: Size(64 << 20),
            max_unflushed: Size(256 << 20),
            disk_cache_dir: None,
            disk_cache: Size(0),
            max_concurrent_reads: 64,
            replaced_tables_kept_secs: default_replaced_tables_kept_secs(),
        })
    }
}

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
    /// Parses and validates a TOML document.
    ///
    /// # Errors
    /// `InvalidArgument` naming the bad field.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: RemoteConfig = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("remote backend configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// An I/O error naming the file, or `InvalidArgument` naming file and field.
    pub fn from_file(path: &FsPath) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::from_toml_str(&text).map_err(|e| e.context(path.display()))
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
        let url = url::Url::parse(&self.url)
            .map_err(|e| Error::invalid(format!("remote.url '{}': {e}", self.url)))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "remote.url must not carry credentials; set them in the environment \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...)",
            ));
        }
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "abfs" | "abfss" => Scheme::Azure,
            "memory" => Scheme::Memory,
            other => {
                return Err(Error::invalid(format!(
                    "remote.url '{}': unsupported scheme '{other}' (use file, s3, gs, az or \
                     memory)",
                    self.url
                )))
            }
        };
        if matches!(scheme, Scheme::S3 | Scheme::Gcs | Scheme::Azure)
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(Error::invalid(format!(
                "remote.url '{}' names no bucket or container",
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
        let (url, scheme) = self.parsed_url()?;
        if scheme == Scheme::File && url.to_file_path().is_err() {
            return Err(Error::invalid(format!(
                "remote.url '{}' is not an absolute file path (write file:///abs/dir)",
                self.url
            )));
        }
        if let Some(endpoint) = &self.endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|e| Error::invalid(format!("remote.endpoint '{endpoint}': {e}")))?;
            if scheme != Scheme::S3 && scheme != Scheme::Azure {
                return Err(Error::invalid(format!(
                    "remote.endpoint is only used with s3:// or az:// URLs, not '{}'",
                    self.url
                )));
            }
            if parsed.scheme() == "http" && !self.allow_http {
                return Err(Error::invalid(format!(
                    "remote.endpoint '{endpoint}' is plain HTTP; set remote.allow_http = true \
                     to allow it"
                )));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(Error::invalid("remote.endpoint must not carry credentials"));
            }
        }
        if let Some(meta) = self.meta_cache {
            if meta >= self.block_cache {
                return Err(Error::invalid(format!(
                    "remote.meta_cache = {meta} must be below remote.block_cache = {}",
                    self.block_cache
                )));
            }
        }
        const MIB: u64 = 1 << 20;
        if self.memtable.0 < MIB {
            return Err(Error::invalid(format!(
                "remote.memtable = {} is below the minimum of 1 MiB",
                self.memtable
            )));
        }
        if self.max_unflushed < self.memtable {
            return Err(Error::invalid(format!(
                "remote.max_unflushed = {} must be at least remote.memtable = {}",
                self.max_unflushed, self.memtable
            )));
        }
        if self.disk_cache.0 > 0 && self.disk_cache_dir.is_none() {
            return Err(Error::invalid(
                "remote.disk_cache is set but remote.disk_cache_dir is not",
            ));
        }
        if self.max_concurrent_reads == 0 || self.max_concurrent_reads > 4096 {
            return Err(Error::invalid(format!(
                "remote.max_concurrent_reads = {} is outside 1..=4096",
                self.max_concurrent_reads
            )));
        }
        Ok(())
    }

    /// The split of `block_cache`: (data blocks, indexes + filters + stats).
    pub fn cache_split(&self) -> (u64, u64) {
        let meta = self.meta_cache.map_or(self.block_cache.0 / 5, |m| m.0);
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
    fn embedded_default_parses_and_is_local() {
        let c = RemoteConfig::from_toml_str(DEFAULT_TOML).unwrap();
        assert_eq!(c.parsed_url().unwrap().1, Scheme::File);
        assert_eq!(c, RemoteConfig::default());
        assert_eq!(c.block_cache, Size(256 << 20));
        assert_eq!(
            c.cache_split(),
            ((256 << 20) - (256 << 20) / 5, (256 << 20) / 5)
        );
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
        assert!(e.to_string().contains("remote.meta_cache"), "{e}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("1 GiB".parse::<Size>().unwrap(), Size(1 << 30));
        assert_eq!("64KB".parse::<Size>().unwrap(), Size(64_000));
        assert_eq!("1.5 MiB".parse::<Size>().unwrap(), Size(3 << 19));
        assert!("12 parsecs".parse::<Size>().is_err());
        assert_eq!(Size(3 << 30).to_string(), "3 GiB");
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let base = DEFAULT_TOML.replace("file:///tmp/statekit-remote", "s3://bucket/state");
        let c = RemoteConfig::from_toml_str(&base).unwrap();
        assert_eq!(c.parsed_url().unwrap().1, Scheme::S3);

        let secret = base.replace("s3://bucket", "s3://AKIA:hunter2@bucket");
        let e = RemoteConfig::from_toml_str(&secret).unwrap_err();
        assert!(e.to_string().contains("must not carry credentials"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        let http = format!("{base}endpoint = \"http://127.0.0.1:9000\"\n");
        let e = RemoteConfig::from_toml_str(&http).unwrap_err();
        assert!(e.to_string().contains("allow_http"), "{e}");

        let typo = format!("{base}blok_cache = \"1 GiB\"\n");
        let e = RemoteConfig::from_toml_str(&typo).unwrap_err();
        assert!(e.to_string().contains("blok_cache"), "{e}");

        let small = base.replace("memtable = \"64 MiB\"", "memtable = \"4 KiB\"");
        let e = RemoteConfig::from_toml_str(&small).unwrap_err();
        assert!(e.to_string().contains("remote.memtable"), "{e}");

        let scheme = base.replace("s3://", "ftp://");
        let e = RemoteConfig::from_toml_str(&scheme).unwrap_err();
        assert!(e.to_string().contains("unsupported scheme"), "{e}");

        let relative =
            DEFAULT_TOML.replace("file:///tmp/statekit-remote", "file://fileserver/share");
        assert!(RemoteConfig::from_toml_str(&relative).is_err());
    }
}
