//! The metrics, the JSON line a child prints, and the table the parent prints.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::Result;
use crate::compare::SUBJECT;
use crate::compare::workload::Workload;
use crate::table;

/// Which direction of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Time, memory, space: less is better.
    Lower,
    /// Context only, not compared.
    Neither,
}

/// How a metric's value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Operations per second.
    PerSec,
    /// Seconds.
    Secs,
    /// MiB.
    Mib,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Key in the JSON line.
    pub key: String,
    /// Text of the row.
    pub label: String,
    /// How the value prints.
    pub unit: Unit,
    /// Which direction is better.
    pub better: Better,
}

fn metric(key: impl Into<String>, label: impl Into<String>, unit: Unit, better: Better) -> Metric {
    Metric {
        key: key.into(),
        label: label.into(),
        unit,
        better,
    }
}

/// Key of the point-read rate with `threads` threads.
pub fn point_reads_key(threads: usize) -> String {
    format!("point_reads_per_s_t{threads}")
}

/// The rows of the table for `w`, in order.
pub fn metrics(w: &Workload) -> Vec<Metric> {
    use Better::{Higher, Lower, Neither};
    use Unit::{Mib, PerSec, Secs};
    let mut m = vec![
        metric(
            "bulk_load_s",
            format!("1. bulk load {} pairs, one txn (s)", w.items),
            Secs,
            Lower,
        ),
        metric("bulk_load_per_s", "1. bulk load (pairs/s)", PerSec, Higher),
        metric(
            "single_commits_per_s",
            format!(
                "2. {} durable single-insert txns, 1 thread (commits/s)",
                w.single_commits
            ),
            PerSec,
            Higher,
        ),
        metric(
            "batch_inserts_per_s",
            format!(
                "3. {} durable txns of {} inserts (inserts/s)",
                w.batch_txns, w.batch_size
            ),
            PerSec,
            Higher,
        ),
        metric(
            "concurrent_commits_per_s",
            format!(
                "4. {} writers x {} durable single inserts (commits/s)",
                w.writers, w.writer_commits
            ),
            PerSec,
            Higher,
        ),
    ];
    for &t in &w.read_threads {
        m.push(metric(
            point_reads_key(t),
            format!("5. {} point reads, {t} thread(s) (reads/s)", w.reads),
            PerSec,
            Higher,
        ));
    }
    m.extend([
        metric(
            "range_reads_per_s",
            format!("6. {} range reads of {} (ranges/s)", w.ranges, w.range_len),
            PerSec,
            Higher,
        ),
        metric(
            "remove_s",
            format!("7. remove {} keys, one durable txn (s)", w.removes),
            Secs,
            Lower,
        ),
        metric(
            "file_size_mib",
            "8. file size after the run (MiB)",
            Mib,
            Lower,
        ),
        metric("peak_rss_mib", "8. peak RSS, VmHWM (MiB)", Mib, Lower),
        metric(
            "harness_rss_mib",
            "   of which the harness's data, RSS before open (MiB)",
            Mib,
            Neither,
        ),
    ]);
    m
}

/// What one engine measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineReport {
    /// Engine name.
    pub engine: String,
    /// Metric key to value.
    pub values: BTreeMap<String, f64>,
}

impl EngineReport {
    /// The single JSON line a child prints on stdout.
    pub fn to_json_line(&self) -> String {
        let metrics: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({ "engine": self.engine, "metrics": metrics }).to_string()
    }

    /// Parses a child's JSON line.
    pub fn from_json_line(line: &str) -> Result<EngineReport> {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("child's result line is not JSON ({e}): {line:?}"))?;
        let engine = v
            .get("engine")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("child's result line has no \"engine\": {line:?}"))?
            .to_string();
        let metrics = v
            .get("metrics")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("child's result line has no \"metrics\" object: {line:?}"))?;
        let mut values = BTreeMap::new();
        for (k, x) in metrics {
            let x = x
                .as_f64()
                .ok_or_else(|| format!("metric {k} of {engine} is not a number: {x}"))?;
            values.insert(k.clone(), x);
        }
        Ok(EngineReport { engine, values })
    }
}

fn format_value(unit: Unit, x: f64) -> String {
    match unit {
        Unit::PerSec if x >= 100.0 => thousands(x.round() as u64),
        Unit::PerSec => format!("{x:.1}"),
        Unit::Secs => format!("{x:.2}"),
        Unit::Mib => format!("{x:.1}"),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `subject / best peer` for one metric, or why there is none.
fn ratio(metric: &Metric, reports: &[EngineReport]) -> String {
    if metric.better == Better::Neither {
        return "-".into();
    }
    let Some(subject) = reports
        .iter()
        .find(|r| r.engine == SUBJECT)
        .and_then(|r| r.values.get(&metric.key))
    else {
        return "n/a".into();
    };
    let peers = reports
        .iter()
        .filter(|r| r.engine != SUBJECT)
        .filter_map(|r| r.values.get(&metric.key).copied());
    let best = match metric.better {
        Better::Higher => peers.fold(None, |b: Option<f64>, x| Some(b.map_or(x, |b| b.max(x)))),
        Better::Lower => peers.fold(None, |b: Option<f64>, x| Some(b.map_or(x, |b| b.min(x)))),
        Better::Neither => None,
    };
    match best {
        Some(best) if best > 0.0 => format!("{:.2}x", subject / best),
        _ => "n/a".into(),
    }
}

/// The Markdown table: one row per metric, one column per engine, then the ratio of the
/// subject (PersistX) to the best peer, oriented so that above 1 means PersistX is better
/// for throughput and below 1 means PersistX is better for time, memory and space.
pub fn markdown(w: &Workload, reports: &[EngineReport]) -> String {
    let ratio_header = "PersistX / best peer";
    let mut header: Vec<&str> = vec!["metric"];
    header.extend(reports.iter().map(|r| r.engine.as_str()));
    header.push(ratio_header);
    let rows: Vec<Vec<String>> = metrics(w)
        .iter()
        .map(|m| {
            let mut row = vec![m.label.clone()];
            for r in reports {
                row.push(
                    r.values
                        .get(&m.key)
                        .map_or_else(|| "-".into(), |&x| format_value(m.unit, x)),
                );
            }
            row.push(ratio(m, reports));
            row
        })
        .collect();
    table::markdown(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(engine: &str, pairs: &[(&str, f64)]) -> EngineReport {
        EngineReport {
            engine: engine.into(),
            values: pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        }
    }

    #[test]
    fn json_line_roundtrip() -> Result<()> {
        let r = report("redb", &[("bulk_load_s", 1.5), ("peak_rss_mib", 300.25)]);
        let line = r.to_json_line();
        assert!(!line.contains('\n'));
        assert_eq!(EngineReport::from_json_line(&line)?, r);
        Ok(())
    }

    #[test]
    fn ratio_against_best_peer() {
        let higher = metric("x", "x", Unit::PerSec, Better::Higher);
        let lower = metric("x", "x", Unit::Secs, Better::Lower);
        let peers = vec![
            report("redb", &[("x", 10.0)]),
            report("sled", &[("x", 40.0)]),
        ];
        assert_eq!(ratio(&higher, &peers), "n/a");
        let mut all = peers.clone();
        all.push(report(SUBJECT, &[("x", 20.0)]));
        assert_eq!(ratio(&higher, &all), "0.50x");
        assert_eq!(ratio(&lower, &all), "2.00x");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_value(Unit::PerSec, 12.34), "12.3");
    }
}
