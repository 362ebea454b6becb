//! `explain.md`: the reasons as Markdown tables, the database's first, then one per state.

use std::fmt::Write;

use crate::machine::Machine;
use crate::shape::WorkloadShape;
use crate::tuning::Tuning;

/// Renders the explanation of `tuning`, derived from `shape` on `machine`.
pub fn explain_markdown(tuning: &Tuning, shape: &WorkloadShape, machine: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Why these RocksDB settings\n");
    let _ = writeln!(
        out,
        "Derived by statekit's tuner from **{}** ({:.0} s of stream) for a machine with {} \
         cores, a {} disk{}, {} I/O and a memory budget of {}. Every option below is set by \
         one rule; options not listed keep the backend's defaults.\n",
        cell(&shape.source),
        shape.seconds,
        machine.cores,
        match machine.disk.kind {
            crate::machine::DiskKind::Ssd => "solid-state",
            crate::machine::DiskKind::Hdd => "spinning",
        },
        match machine.disk.seq_write_bytes_per_sec {
            Some(w) => format!(
                " (measured: {}/s sequential writes)",
                bytesize::ByteSize(w).display().iec()
            ),
            None => String::new(),
        },
        if machine.direct_io {
            "direct"
        } else {
            "buffered"
        },
        bytesize::ByteSize(machine.memory_budget).display().iec()
    );
    if !tuning.warnings.is_empty() {
        let _ = writeln!(out, "## Warnings\n");
        for w in &tuning.warnings {
            let _ = writeln!(out, "- {w}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## The workload, per state\n");
    let _ = writeln!(
        out,
        "| state | kind | writes/s | point reads/s (miss) | scans/s (entries) | deletes/s | range deletes/s (keys) | key, value bytes | live |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in &shape.states {
        let r = &s.rates;
        let _ = writeln!(
            out,
            "| {} | {:?} | {:.0} | {:.0} ({:.0}%) | {:.0} ({:.1}) | {:.0} | {:.0} ({:.1}) | {:.0}, {:.0} | {} |",
            cell(&s.name),
            s.kind,
            r.entry_writes(),
            r.gets,
            s.get_miss_ratio * 100.0,
            r.scans,
            s.scan_entries,
            r.removals(),
            r.range_deletes,
            s.range_delete_keys,
            s.key_bytes,
            s.value_bytes,
            bytesize::ByteSize(s.live_bytes).display().iec()
        );
    }
    out.push('\n');
    let mut groups: Vec<Option<&str>> = vec![None];
    for r in &tuning.reasons {
        if !groups.contains(&r.state.as_deref()) {
            groups.push(r.state.as_deref());
        }
    }
    for group in groups {
        let _ = match group {
            None => writeln!(out, "## The database\n"),
            Some(s) => writeln!(out, "## State `{}`\n", cell(s)),
        };
        let _ = writeln!(out, "| option | value | rule | from |");
        let _ = writeln!(out, "|---|---|---|---|");
        for r in tuning
            .reasons
            .iter()
            .filter(|r| r.state.as_deref() == group)
        {
            let option = match &r.state {
                Some(s) => r
                    .key
                    .trim_start_matches(&format!("states.{s}."))
                    .to_string(),
                None => r.key.clone(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                option,
                cell(&r.value),
                cell(&r.rule),
                cell(&r.figures)
            );
        }
        out.push('\n');
    }
    out
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
