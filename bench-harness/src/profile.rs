//! Workload profiles: TOML files under `profiles/` that name a workload, its parameters and
//! its scales.
//!
//! # Schema
//! ```toml
//! workload = "ad-click-interval-join"  # or feature-concat, sliding-window-demand, daily-uv
//! description = "..."                  # optional, shown in reports
//! seed = 42                            # optional (default 42): the generated stream
//! max_parallelism = 128                # optional (default 128): number of key groups
//!
//! [params]                             # the workload's semantics, same at every scale;
//! window = "20m"                       # every field optional, see the workload's *Params
//!
//! [scales.quick]                       # required: quick, standard and large; others allowed
//! duration = "25m"                     # simulated event time
//! keys = 5000                          # distinct keys (users, hexagons, devices, requests)
//! events_per_sec = 200                 # main-stream events per second of event time
//! memory_budget = "256MiB"             # optional
//! self_check = true                    # optional: check results against an independent computation
//! checkpoint_interval = "5m"           # optional: checkpoint every this much event time
//! ```
//! Durations are written like `200ms`, `5s`, `20m`, `1h 30m`; sizes like `256MiB`, `8GiB`.
//! Unknown fields are errors. Every error names the file, the line and column, and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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
}

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

#[derive(Deserialize)]
struct Head {
    workload: toml::Spanned<String>,
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
    scales: BTreeMap<String, ScaleSpec>,
}

/// Line and column (1-based) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

fn at(path: &Path, src: &str, span: Option<Range<usize>>, field: &str, message: &str) -> Error {
    let (line, col) = span.map_or((1, 1), |s| line_col(src, s.start));
    let field = if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    };
    Error::invalid(format!("{}:{line}:{col}: {field}{message}", path.display()))
}

/// The span of the value at a dotted path, for errors found after parsing.
fn locate(src: &str, path: &[&str]) -> Option<Range<usize>> {
    let doc = toml::de::DeTable::parse(src).ok()?;
    let mut table = doc.get_ref();
    let mut span = None;
    for (i, part) in path.iter().enumerate() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *part)?;
        span = Some(value.span());
        if i + 1 < path.len() {
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return span,
            }
        }
    }
    span
}

fn parse_doc<P: DeserializeOwned + Default>(path: &Path, src: &str) -> Result<Doc<P>> {
    toml::from_str::<Doc<P>>(src).map_err(|e| at(path, src, e.span(), "", e.message().trim()))
}

impl Profile {
    /// Reads and validates a profile file.
    ///
    /// # Errors
    /// `NotFound` for a missing file; `InvalidArgument` naming the file, line, column and field
    /// of a malformed or invalid profile.
    pub fn load(path: &Path) -> Result<Profile> {
        let src = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::parse(path, &src)
    }

    /// Parses and validates profile text (`path` is used in messages).
    ///
    /// # Errors
    /// As [`Profile::load`].
    pub fn parse(path: &Path, src: &str) -> Result<Profile> {
        let head: Head = toml::from_str(src)
            .map_err(|e| at(path, src, e.span(), "workload", e.message().trim()))?;
        let workload = match head.workload.get_ref().as_str() {
            "ad-click-interval-join" => WorkloadKind::AdClickIntervalJoin,
            "feature-concat" => WorkloadKind::FeatureConcat,
            "sliding-window-demand" => WorkloadKind::SlidingWindowDemand,
            "daily-uv" => WorkloadKind::DailyUv,
            other => {
                return Err(at(
                    path,
                    src,
                    Some(head.workload.span()),
                    "workload",
                    &format!(
                        "unknown workload '{other}' (expected ad-click-interval-join, \
                         feature-concat, sliding-window-demand or daily-uv)"
                    ),
                ))
            }
        };
        macro_rules! load {
            ($ty:ty, $variant:ident) => {{
                let doc: Doc<$ty> = parse_doc(path, src)?;
                if let Err((field, message)) = doc.params.validate() {
                    let span = locate(src, &["params", &field]);
                    return Err(at(path, src, span, &format!("params.{field}"), &message));
                }
                (
                    doc.description,
                    doc.seed,
                    doc.max_parallelism,
                    WorkloadParams::$variant(doc.params),
                    doc.scales,
                )
            }};
        }
        let (description, seed, max_parallelism, params, scales) = match workload {
            WorkloadKind::AdClickIntervalJoin => load!(AdClickParams, AdClick),
            WorkloadKind::FeatureConcat => load!(FeatureConcatParams, FeatureConcat),
            WorkloadKind::SlidingWindowDemand => load!(SlidingWindowParams, SlidingWindow),
            WorkloadKind::DailyUv => load!(DailyUvParams, DailyUv),
        };
        if max_parallelism == 0
            || u32::from(max_parallelism) > statekit_backend::keygroup::MAX_MAX_PARALLELISM
        {
            let span = locate(src, &["max_parallelism"]);
            return Err(at(
                path,
                src,
                span,
                "max_parallelism",
                "must be in 1..=32768",
            ));
        }
        for name in REQUIRED_SCALES {
            if !scales.contains_key(name) {
                let span = locate(src, &["scales"]);
                return Err(at(
                    path,
                    src,
                    span,
                    &format!("scales.{name}"),
                    "is missing (every profile defines quick, standard and large)",
                ));
            }
        }
        for (name, scale) in &scales {
            let bad = |field: &str, message: &str| {
                let span = locate(src, &["scales", name, field]);
                at(path, src, span, &format!("scales.{name}.{field}"), message)
            };
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

    fn parse(src: &str) -> Result<Profile> {
        Profile::parse(Path::new("profiles/x.toml"), src)
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
    fn errors_name_file_line_and_field() {
        let e = parse(&GOOD.replace(
            "keys = 1000\nevents_per_sec = 100\n\n[scales.large]",
            "keys = 0\nevents_per_sec = 100\n\n[scales.large]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("profiles/x.toml:16:8") && e.contains("scales.standard.keys"),
            "{e}"
        );
        let e = parse(&GOOD.replace("window = \"20m\"", "window = \"20 parsecs\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles/x.toml:6:") && e.contains("duration"),
            "{e}"
        );
        let e = parse(&GOOD.replace("window = \"20m\"", "windw = \"20m\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":6:") && e.contains("windw"), "{e}");
        let e = parse(&GOOD.replace("window = \"20m\"", "click_fraction = 3.0"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":6:") && e.contains("params.click_fraction"),
            "{e}"
        );
        let e = parse(&GOOD.replace("ad-click-interval-join", "ad-click"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:") && e.contains("unknown workload"), "{e}");
        let e = parse(&GOOD.replace("[scales.large]", "[scales.larg]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scales.large") && e.contains("missing"), "{e}");
        let e = parse("workload = [").unwrap_err().to_string();
        assert!(e.contains("profiles/x.toml:1:"), "{e}");
        let e = Profile::load(Path::new("/nonexistent/p.toml")).unwrap_err();
        assert_eq!(e.kind(), statekit_backend::ErrorKind::NotFound);
    }
}
