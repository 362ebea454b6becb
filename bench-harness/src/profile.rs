//! Workload profiles: TOML files under `profiles/` that name a workload, its parameters and
//! its scales.
//!
//! # Schema
//! Only `workload` is required; every other field takes the default shown (the shipped
//! profiles show them as comments).
//! ```toml
//! workload = "ad-click-interval-join"  # or feature-concat, sliding-window-demand, daily-uv
//! description = "..."                  # shown in reports (default empty)
//! seed = 42                            # the generated stream (default 42)
//! max_parallelism = 128                # number of key groups (default 128)
//!
//! [params]                             # the workload's semantics, same at every scale;
//! window = "20m"                       # every field defaults, see the workload's *Params
//!
//! [scales.quick]                       # quick, standard and large exist with the workload's
//! duration = "25m"                     # defaults (WorkloadKind::default_scales); a table
//! keys = 5000                          # overrides the fields it writes; another name takes
//! events_per_sec = 200                 # the omitted fields from `standard`
//! memory_budget = "256MiB"             # default none
//! self_check = true                    # check results against an independent computation
//! checkpoint_interval = "5m"           # checkpoint every this much event time, or "none"
//! ```
//! Durations are written like `200ms`, `5s`, `20m`, `1h 30m`; sizes like `256MiB`, `8GiB`.
//! Unknown fields are errors. Every error names the file, the line and column, and the field
//! (read through [`statekit_backend::config_file`], like the backends' configurations).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use statekit_backend::config_file::{self, FieldError};
use statekit_backend::{Error, Result, StateBackend};

use crate::event::Event;
use crate::workloads::ad_click::{AdClickGenerator, AdClickJoin, AdClickParams};
use crate::workloads::daily_uv::{DailyUv, DailyUvGenerator, DailyUvParams};
use crate::workloads::feature_concat::{
    FeatureConcat, FeatureConcatGenerator, FeatureConcatParams,
};
use crate::workloads::sliding_window::{
    SlidingWindowDemand, SlidingWindowGenerator, SlidingWindowParams,
};
use crate::workloads::{Operator, ScaleSpec};

/// The scales every profile defines.
pub const REQUIRED_SCALES: [&str; 3] = ["quick", "standard", "large"];

/// Which reference workload a profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Displays x clicks interval join.
    AdClickIntervalJoin,
    /// Three-stream feature concatenation with timers.
    FeatureConcat,
    /// Dedup then sliding windows of demand per hexagon.
    SlidingWindowDemand,
    /// Daily unique visitors with a dictionary and bitmaps.
    DailyUv,
}

impl WorkloadKind {
    /// The profile name of the workload.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::AdClickIntervalJoin => "ad-click-interval-join",
            WorkloadKind::FeatureConcat => "feature-concat",
            WorkloadKind::SlidingWindowDemand => "sliding-window-demand",
            WorkloadKind::DailyUv => "daily-uv",
        }
    }

    /// The workload of a profile name.
    pub fn from_name(name: &str) -> Option<WorkloadKind> {
        [
            WorkloadKind::AdClickIntervalJoin,
            WorkloadKind::FeatureConcat,
            WorkloadKind::SlidingWindowDemand,
            WorkloadKind::DailyUv,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// The scales a profile of this workload has without writing any (`WORKLOADS.md`):
    /// `quick` runs in seconds and checks its results, `standard` runs the reference rates
    /// for a few minutes, `large` holds state far beyond a 256 MiB budget.
    pub fn default_scales(self) -> BTreeMap<String, ScaleSpec> {
        const MIB: u64 = 1 << 20;
        let min = |m: u64| Duration::from_secs(60 * m);
        let scale = |duration, keys, events_per_sec| ScaleSpec {
            duration,
            keys,
            events_per_sec,
            memory_budget: None,
            self_check: false,
            checkpoint_interval: None,
        };
        let quick = |duration, keys, rate| ScaleSpec {
            self_check: true,
            ..scale(duration, keys, rate)
        };
        let checkpointed = |duration, keys, rate| ScaleSpec {
            checkpoint_interval: Some(min(4)),
            ..scale(duration, keys, rate)
        };
        let budgeted = |duration, keys, rate| ScaleSpec {
            memory_budget: Some(256 * MIB),
            ..scale(duration, keys, rate)
        };
        let [q, s, l] = match self {
            // Quick: past the 20-minute window so cleanup runs. Standard: 20,000 displays/s
            // over 2,000,000 users (~2.5 GB buffered). Large: ~10 GB of steady state.
            WorkloadKind::AdClickIntervalJoin => [
                quick(min(25), 20_000, 200.0),
                checkpointed(min(5), 2_000_000, 20_000.0),
                budgeted(min(40), 2_000_000, 20_000.0),
            ],
            // Keys are not used: every request id is new.
            WorkloadKind::FeatureConcat => [
                quick(min(10), 1, 200.0),
                checkpointed(min(5), 1, 20_000.0),
                budgeted(min(30), 1, 20_000.0),
            ],
            WorkloadKind::SlidingWindowDemand => [
                quick(min(40), 2_000, 200.0),
                scale(min(10), 100_000, 50_000.0),
                budgeted(min(60), 1_000_000, 50_000.0),
            ],
            // Keys are distinct devices.
            WorkloadKind::DailyUv => [
                quick(min(10), 50_000, 300.0),
                scale(min(5), 50_000_000, 100_000.0),
                budgeted(min(60), 50_000_000, 100_000.0),
            ],
        };
        let mut scales: BTreeMap<String, ScaleSpec> = REQUIRED_SCALES
            .iter()
            .map(|n| n.to_string())
            .zip([q, s, l])
            .collect();
        // `statekit tune --validate`: state over 8x the budget, minutes per run.
        let validate = |duration, keys, rate, budget| ScaleSpec {
            memory_budget: Some(budget),
            ..scale(duration, keys, rate)
        };
        let sec = Duration::from_secs;
        let v = match self {
            // ~1.2 GB buffered.
            WorkloadKind::AdClickIntervalJoin => validate(sec(150), 2_000_000, 20_000.0, 128 * MIB),
            // 440-470 MiB live when the input ends on tuned runs (RocksDB's estimate, 320-476
            // across configurations), ~700 MiB of user data written: at the reference rate a
            // run under direct I/O took over 7 minutes, so half the rate and a small budget.
            WorkloadKind::FeatureConcat => validate(sec(60), 1, 10_000.0, 48 * MIB),
            // Its state is bounded by its windows (dedup per minute, panes of 32 minutes):
            // ~155 MiB at this rate, so a small budget.
            WorkloadKind::SlidingWindowDemand => validate(sec(90), 1_000_000, 100_000.0, 16 * MIB),
            // The device dictionary grows with every new device: ~330 MiB by the end.
            WorkloadKind::DailyUv => validate(sec(150), 50_000_000, 50_000.0, 32 * MIB),
        };
        scales.insert(VALIDATE_SCALE.into(), v);
        scales
    }
}

/// The scale `statekit tune --validate` is meant for.
pub const VALIDATE_SCALE: &str = "validate";

/// The parameters of a profile's workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WorkloadParams {
    /// ad-click-interval-join.
    AdClick(AdClickParams),
    /// feature-concat.
    FeatureConcat(FeatureConcatParams),
    /// sliding-window-demand.
    SlidingWindow(SlidingWindowParams),
    /// daily-uv.
    DailyUv(DailyUvParams),
}

/// A parsed, validated profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// The file it was read from.
    pub path: PathBuf,
    /// The workload.
    pub workload: WorkloadKind,
    /// What it models.
    pub description: String,
    /// Seed of the generated stream.
    pub seed: u64,
    /// Number of key groups.
    pub max_parallelism: u16,
    /// The workload's parameters.
    pub params: WorkloadParams,
    /// The scales by name.
    pub scales: BTreeMap<String, ScaleSpec>,
}

/// The field every profile writes: which workload (its parameters' type depends on it).
#[derive(Deserialize)]
struct Head {
    workload: Option<String>,
}

fn default_seed() -> u64 {
    42
}

fn default_max_parallelism() -> u16 {
    128
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc<P> {
    #[allow(dead_code)] // read by `Head`
    workload: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_max_parallelism")]
    max_parallelism: u16,
    #[serde(default)]
    params: P,
    #[serde(default)]
    scales: BTreeMap<String, ScaleFields>,
}

/// A `[scales.NAME]` table: the fields it writes replace the default scale's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleFields {
    #[serde(default, deserialize_with = "crate::util::de_opt_duration")]
    duration: Option<Duration>,
    keys: Option<u64>,
    events_per_sec: Option<f64>,
    #[serde(default, deserialize_with = "crate::util::de_opt_size")]
    memory_budget: Option<u64>,
    self_check: Option<bool>,
    /// `Some(None)`: `"none"`, no checkpoints even where the base scale takes them.
    #[serde(default, deserialize_with = "de_checkpoint_interval")]
    checkpoint_interval: Option<Option<Duration>>,
}

/// A checkpoint interval: a duration, or `"none"` for no checkpoints.
fn de_checkpoint_interval<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<Duration>>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "none" {
        return Ok(Some(None));
    }
    crate::util::parse_duration(&text)
        .map(|d| Some(Some(d)))
        .map_err(|e| serde::de::Error::custom(e.message()))
}

impl ScaleFields {
    fn over(self, base: &ScaleSpec) -> ScaleSpec {
        ScaleSpec {
            duration: self.duration.unwrap_or(base.duration),
            keys: self.keys.unwrap_or(base.keys),
            events_per_sec: self.events_per_sec.unwrap_or(base.events_per_sec),
            memory_budget: self.memory_budget.or(base.memory_budget),
            self_check: self.self_check.unwrap_or(base.self_check),
            checkpoint_interval: self.checkpoint_interval.unwrap_or(base.checkpoint_interval),
        }
    }
}

/// The profile's scales: the workload's defaults, with the written tables over them.
fn scales_of(
    workload: WorkloadKind,
    written: BTreeMap<String, ScaleFields>,
) -> BTreeMap<String, ScaleSpec> {
    let mut scales = workload.default_scales();
    for (name, fields) in written {
        let base = scales
            .get(&name)
            .or_else(|| scales.get("standard"))
            .cloned();
        if let Some(base) = base {
            scales.insert(name, fields.over(&base));
        }
    }
    scales
}

/// Checks a scale's values; errors name the field under `scales.NAME`.
fn check_scale(name: &str, scale: &ScaleSpec) -> std::result::Result<(), FieldError> {
    let bad =
        |field: &str, message: &str| FieldError::new(format!("scales.{name}.{field}"), message);
    if scale.duration.is_zero() {
        return Err(bad("duration", "must be positive"));
    }
    if scale.keys == 0 {
        return Err(bad("keys", "must be at least 1"));
    }
    if !(scale.events_per_sec > 0.0 && scale.events_per_sec.is_finite()) {
        return Err(bad("events_per_sec", "must be a positive number"));
    }
    if scale.checkpoint_interval.is_some_and(|d| d.is_zero()) {
        return Err(bad("checkpoint_interval", "must be positive"));
    }
    Ok(())
}

/// Parses the document with the workload's parameter type and checks the parameters.
fn parse_doc<P: DeserializeOwned + Default>(
    path: &Path,
    src: &str,
    validate: impl Fn(&P) -> std::result::Result<(), (String, String)>,
) -> Result<Doc<P>> {
    let doc: Doc<P> = config_file::parse(path, src)?;
    if let Err((field, message)) = validate(&doc.params) {
        return Err(FieldError::new(format!("params.{field}"), message).at(path, src));
    }
    Ok(doc)
}

impl Profile {
    /// Reads and validates a profile file.
    ///
    /// # Errors
    /// `NotFound` for a missing file; `InvalidArgument` naming the file, line, column and field
    /// of a malformed or invalid profile.
    pub fn load(path: &Path) -> Result<Profile> {
        Self::parse(path, &config_file::read(path)?)
    }

    /// Parses and validates profile text (`path` is used in messages).
    ///
    /// # Errors
    /// As [`Profile::load`].
    pub fn parse(path: &Path, src: &str) -> Result<Profile> {
        let head: Head = config_file::parse(path, src)?;
        let Some(name) = head.workload else {
            return Err(FieldError::new(
                "workload",
                "is missing (write for example workload = \"ad-click-interval-join\")",
            )
            .at(path, src));
        };
        let Some(workload) = WorkloadKind::from_name(&name) else {
            return Err(FieldError::new(
                "workload",
                format!(
                    "unknown workload '{name}' (expected ad-click-interval-join, \
                     feature-concat, sliding-window-demand or daily-uv)"
                ),
            )
            .at(path, src));
        };
        macro_rules! load {
            ($ty:ty, $variant:ident) => {{
                let doc: Doc<$ty> = parse_doc(path, src, <$ty>::validate)?;
                (
                    doc.description,
                    doc.seed,
                    doc.max_parallelism,
                    WorkloadParams::$variant(doc.params),
                    doc.scales,
                )
            }};
        }
        let (description, seed, max_parallelism, params, written) = match workload {
            WorkloadKind::AdClickIntervalJoin => load!(AdClickParams, AdClick),
            WorkloadKind::FeatureConcat => load!(FeatureConcatParams, FeatureConcat),
            WorkloadKind::SlidingWindowDemand => load!(SlidingWindowParams, SlidingWindow),
            WorkloadKind::DailyUv => load!(DailyUvParams, DailyUv),
        };
        if max_parallelism == 0
            || u32::from(max_parallelism) > statekit_backend::keygroup::MAX_MAX_PARALLELISM
        {
            return Err(FieldError::new("max_parallelism", "must be in 1..=32768").at(path, src));
        }
        let scales = scales_of(workload, written);
        for (name, scale) in &scales {
            check_scale(name, scale).map_err(|e| e.at(path, src))?;
        }
        Ok(Profile {
            path: path.to_path_buf(),
            workload,
            description,
            seed,
            max_parallelism,
            params,
            scales,
        })
    }

    /// The profile's name (its file stem).
    pub fn name(&self) -> String {
        self.path.file_stem().map_or_else(
            || self.workload.name().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    }

    /// The scale called `name`.
    ///
    /// # Errors
    /// `InvalidArgument` listing the scales there are.
    pub fn scale(&self, name: &str) -> Result<&ScaleSpec> {
        self.scales.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no scale '{name}' (it has {})",
                self.path.display(),
                self.scales.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The generated input stream of `scale`, in arrival order.
    ///
    /// # Errors
    /// `InvalidArgument` for parameters the generator cannot use.
    pub fn generator(&self, scale: &ScaleSpec) -> Result<Box<dyn Iterator<Item = Event> + Send>> {
        Ok(match &self.params {
            WorkloadParams::AdClick(p) => Box::new(AdClickGenerator::new(p, scale, self.seed)?),
            WorkloadParams::FeatureConcat(p) => {
                Box::new(FeatureConcatGenerator::new(p, scale, self.seed)?)
            }
            WorkloadParams::SlidingWindow(p) => {
                Box::new(SlidingWindowGenerator::new(p, scale, self.seed)?)
            }
            WorkloadParams::DailyUv(p) => Box::new(DailyUvGenerator::new(p, scale, self.seed)?),
        })
    }

    /// The workload's operator, with its state registered in `backend`. With `collect`, it
    /// keeps its outputs for the self-check.
    ///
    /// # Errors
    /// Backend errors.
    pub fn operator(
        &self,
        backend: &mut dyn StateBackend,
        collect: bool,
    ) -> Result<Box<dyn Operator>> {
        Ok(match &self.params {
            WorkloadParams::AdClick(p) => Box::new(AdClickJoin::new(backend, p, collect)?),
            WorkloadParams::FeatureConcat(p) => Box::new(FeatureConcat::new(backend, p, collect)?),
            WorkloadParams::SlidingWindow(p) => {
                Box::new(SlidingWindowDemand::new(backend, p, collect)?)
            }
            WorkloadParams::DailyUv(p) => Box::new(DailyUv::new(backend, p, collect)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
workload = "ad-click-interval-join"
seed = 7

[params]
window = "20m"

[scales.quick]
duration = "25m"
keys = 100
events_per_sec = 10
self_check = true

[scales.standard]
duration = "25m"
keys = 1000
events_per_sec = 100

[scales.large]
duration = "1h"
keys = 1000
events_per_sec = 100
memory_budget = "256MiB"
"#;

    /// The shipped profiles, embedded at build time (tests read nothing outside the crate's
    /// own sources at run time).
    const SHIPPED: [(&str, &str); 4] = [
        (
            "profiles/ad-click-interval-join.toml",
            include_str!("../../profiles/ad-click-interval-join.toml"),
        ),
        (
            "profiles/feature-concat.toml",
            include_str!("../../profiles/feature-concat.toml"),
        ),
        (
            "profiles/sliding-window-demand.toml",
            include_str!("../../profiles/sliding-window-demand.toml"),
        ),
        (
            "profiles/daily-uv.toml",
            include_str!("../../profiles/daily-uv.toml"),
        ),
    ];

    fn parse(src: &str) -> Result<Profile> {
        Profile::parse(Path::new("profiles/x.toml"), src)
    }

    /// The text with every `# field = value` line uncommented (indented sample lines and
    /// prose stay comments).
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest.to_string()
                }
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_good_profile_parses() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.workload, WorkloadKind::AdClickIntervalJoin);
        assert_eq!(p.seed, 7);
        assert_eq!(p.scale("large").unwrap().memory_budget, Some(256 << 20));
        assert!(p.scale("huge").is_err());
    }

    #[test]
    fn a_minimal_profile_takes_every_default() {
        for kind in [
            WorkloadKind::AdClickIntervalJoin,
            WorkloadKind::FeatureConcat,
            WorkloadKind::SlidingWindowDemand,
            WorkloadKind::DailyUv,
        ] {
            let p = parse(&format!("workload = \"{}\"\n", kind.name())).unwrap();
            assert_eq!(p.workload, kind);
            assert_eq!((p.seed, p.max_parallelism), (42, 128));
            assert_eq!(p.scales, kind.default_scales());
            assert!(p.scale("quick").unwrap().self_check);
        }
        // A scale table writes only what it changes; a new scale starts from `standard`.
        let p = parse(
            "workload = \"daily-uv\"\n[scales.quick]\nkeys = 10\n[scales.soak]\nduration = \"2h\"\n",
        )
        .unwrap();
        let defaults = WorkloadKind::DailyUv.default_scales();
        assert_eq!(p.scale("quick").unwrap().keys, 10);
        assert_eq!(
            p.scale("quick").unwrap().duration,
            defaults["quick"].duration
        );
        let soak = p.scale("soak").unwrap();
        assert_eq!(soak.duration, Duration::from_secs(7200));
        assert_eq!(soak.events_per_sec, defaults["standard"].events_per_sec);
        // A new scale inherits standard's checkpoints; "none" turns them off.
        let with = "workload = \"ad-click-interval-join\"\n[scales.peer]\nkeys = 5\n";
        let p = parse(with).unwrap();
        assert!(p.scale("peer").unwrap().checkpoint_interval.is_some());
        let p = parse(&format!("{with}checkpoint_interval = \"none\"\n")).unwrap();
        assert_eq!(p.scale("peer").unwrap().checkpoint_interval, None);
        let p = parse(&format!("{with}checkpoint_interval = \"90s\"\n")).unwrap();
        assert_eq!(
            p.scale("peer").unwrap().checkpoint_interval,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn shipped_profiles_comment_out_their_defaults() {
        for (path, text) in SHIPPED {
            let p = Profile::parse(Path::new(path), text).unwrap();
            let minimal = Profile::parse(
                Path::new(path),
                &format!("workload = \"{}\"\n", p.workload.name()),
            )
            .unwrap();
            assert_eq!(
                p.params, minimal.params,
                "{path} writes a value that is not a default"
            );
            assert_eq!(
                p.scales, minimal.scales,
                "{path} writes a value that is not a default"
            );
            // Uncommented, the comments set the same values: they show the real defaults.
            let explicit = Profile::parse(Path::new(path), &uncommented(text)).unwrap();
            assert_eq!(explicit, p, "{path}: a commented value is not the default");
        }
    }

    /// Every truncation and a sweep of single-byte damage of a profile either parses or is
    /// an error naming the file, never a panic.
    #[test]
    fn damaged_profiles_never_panic_and_errors_name_the_file() {
        let path = Path::new("profiles/damaged.toml");
        let check = |damaged: &[u8], what: &str| {
            let damaged = String::from_utf8_lossy(damaged);
            if let Err(e) = Profile::parse(path, &damaged) {
                assert!(
                    e.to_string().contains("profiles/damaged.toml"),
                    "{what}: {e}"
                );
            }
        };
        for cut in 0..GOOD.len() {
            check(&GOOD.as_bytes()[..cut], &format!("cut at {cut}"));
        }
        for at in 0..GOOD.len() {
            for byte in [b'=', b'[', b'"', b'\n', b'0', b'-', 0xff] {
                let mut damaged = GOOD.as_bytes().to_vec();
                damaged[at] = byte;
                check(&damaged, &format!("byte {at} = {byte:#x}"));
            }
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse(&GOOD.replace(
            "keys = 1000\nevents_per_sec = 100\n\n[scales.large]",
            "keys = 0\nevents_per_sec = 100\n\n[scales.large]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("profiles/x.toml:16:8: field `scales.standard.keys`"),
            "{e}"
        );
        let e = parse(&GOOD.replace("window = \"20m\"", "window = \"20 parsecs\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles/x.toml:6:10: field `params.window`") && e.contains("duration"),
            "{e}"
        );
        let e = parse(&GOOD.replace("window = \"20m\"", "windw = \"20m\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":6:1: field `params.windw`") && e.contains("unknown field"),
            "{e}"
        );
        let e = parse(&GOOD.replace("window = \"20m\"", "click_fraction = 3.0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":6:18: field `params.click_fraction`"), "{e}");
        let e = parse(&GOOD.replace("ad-click-interval-join", "ad-click"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:12: field `workload`: unknown workload"),
            "{e}"
        );
        let e = parse("seed = 1\n").unwrap_err().to_string();
        assert!(e.contains(":1:1: field `workload`: is missing"), "{e}");
        let e = parse(&GOOD.replace("self_check = true", "self_chek = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `scales.quick.self_chek`"), "{e}");
        let e = parse(&GOOD.replace("seed = 7", "max_parallelism = 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:19: field `max_parallelism`"), "{e}");
        let e = parse("workload = [").unwrap_err().to_string();
        assert!(e.contains("profiles/x.toml:1:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Profile::load(&dir.path().join("p.toml")).unwrap_err();
        assert_eq!(e.kind(), statekit_backend::ErrorKind::NotFound);
    }
}
