//! Medians, ratios and the three ways `tmpfsd bench` shows them: a table,
//! JSON and an SVG bar chart.

use std::fmt::Write;

use serde_json::{json, Value};
use tmpfsd::core::Requests;

use super::host::Host;
use super::workloads::{Better, Figure};
use super::{Kind, Target};

/// One figure from one run on one target.
#[derive(Debug, Clone)]
pub(super) struct Measurement {
    /// Index into the targets.
    pub target: usize,
    pub figure: Figure,
}

/// The requests the kernel sent a tmpfsd mount during one run of one
/// workload.
#[derive(Debug, Clone)]
pub(super) struct RequestSample {
    /// Index into the targets.
    pub target: usize,
    pub workload: &'static str,
    /// How many of what the workload does, for requests per unit.
    pub units: Option<(u64, &'static str)>,
    pub requests: Requests,
}

/// A workload's requests: its median run (by total) and every run's total.
#[derive(Debug)]
struct RequestRow<'a> {
    median: &'a RequestSample,
    totals: Vec<u64>,
}

impl RequestRow<'_> {
    /// Requests per unit of work, when the workload has units.
    fn per_unit(&self, count: u64) -> Option<f64> {
        self.median
            .units
            .filter(|&(n, _)| n > 0)
            .map(|(n, _)| count as f64 / n as f64)
    }
}

/// The kinds of request in `r` that were sent at all, most frequent first.
fn kinds(r: &Requests) -> Vec<(String, u64)> {
    let Ok(Value::Object(fields)) = serde_json::to_value(r) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = fields
        .into_iter()
        .filter_map(|(k, v)| v.as_u64().filter(|&n| n > 0).map(|n| (k, n)))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// One metric across targets.
#[derive(Debug, Clone)]
struct Row {
    metric: &'static str,
    unit: &'static str,
    better: Better,
    /// Samples per target, in run order.
    samples: Vec<Vec<f64>>,
}

impl Row {
    fn median(&self, t: usize) -> Option<f64> {
        median(&self.samples[t])
    }

    /// Speed of `t` relative to `reference`: above 1 is faster, whichever
    /// way the unit runs.
    fn ratio(&self, t: usize, reference: usize) -> Option<f64> {
        let (a, b) = (self.median(t)?, self.median(reference)?);
        let r = match self.better {
            Better::Higher => a / b,
            Better::Lower => b / a,
        };
        r.is_finite().then_some(r)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// Three or four significant figures, no exponent.
pub(super) fn format_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Widest table line before the table splits into blocks (a terminal
/// window at a usual size).
const WIDE: usize = 132;

/// Width of a table line's metric and unit.
const LEAD: usize = 20 + 1 + 9;

/// One column of the human table.
struct Column {
    heading: String,
    /// One cell per row.
    cells: Vec<String>,
}

impl Column {
    fn width(&self) -> usize {
        self.cells
            .iter()
            .chain([&self.heading])
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .max(9)
    }
}

/// The results of a run.
#[derive(Debug)]
pub(super) struct Report {
    targets: Vec<Target>,
    reps: u32,
    rows: Vec<Row>,
    tmpfs: Option<usize>,
    disk: Option<usize>,
    /// Requests to tmpfsd mounts, per run.
    requests: Vec<RequestSample>,
    /// The machine the figures were measured on.
    host: Option<Host>,
}

impl Report {
    pub(super) fn new(targets: Vec<Target>, reps: u32, measurements: Vec<Measurement>) -> Self {
        let mut rows: Vec<Row> = Vec::new();
        for m in measurements {
            let i = match rows.iter().position(|r| r.metric == m.figure.metric) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        metric: m.figure.metric,
                        unit: m.figure.unit,
                        better: m.figure.better,
                        samples: vec![Vec::new(); targets.len()],
                    });
                    rows.len() - 1
                }
            };
            rows[i].samples[m.target].push(m.figure.value);
        }
        let tmpfs = targets.iter().position(|t| t.kind == Kind::Tmpfs);
        let disk = targets.iter().position(|t| t.kind == Kind::Disk);
        Self {
            targets,
            reps,
            rows,
            tmpfs,
            disk,
            requests: Vec::new(),
            host: None,
        }
    }

    /// Adds the requests counted on tmpfsd mounts.
    pub(super) fn with_requests(mut self, requests: Vec<RequestSample>) -> Self {
        self.requests = requests;
        self
    }

    /// Says which machine the figures come from.
    pub(super) fn with_host(mut self, host: Host) -> Self {
        self.host = Some(host);
        self
    }

    /// One row per target and workload whose requests were counted, in
    /// target and then run order; the median run is a real run (the lower
    /// middle one of an even count), so that its kinds add up to its total.
    fn request_rows(&self) -> Vec<RequestRow<'_>> {
        let mut keys: Vec<(usize, &str)> = Vec::new();
        for r in &self.requests {
            if !keys.contains(&(r.target, r.workload)) {
                keys.push((r.target, r.workload));
            }
        }
        // Stable: run order within each target.
        keys.sort_by_key(|&(t, _)| t);
        keys.into_iter()
            .filter_map(|(t, name)| {
                let mut runs: Vec<&RequestSample> = self
                    .requests
                    .iter()
                    .filter(|r| r.target == t && r.workload == name)
                    .collect();
                let totals = runs.iter().map(|r| r.requests.total()).collect();
                runs.sort_by_key(|r| r.requests.total());
                let median = *runs.get((runs.len().max(1) - 1) / 2)?;
                Some(RequestRow { median, totals })
            })
            .collect()
    }

    /// The requests sections of the table, one per counted target: per
    /// workload, the median run's requests, per unit of work where there
    /// is one, by kind.
    fn requests_table(&self) -> String {
        let mut out = String::new();
        let mut shown = None;
        for row in self.request_rows() {
            if shown != Some(row.median.target) {
                shown = Some(row.median.target);
                let label = &self.targets[row.median.target].label;
                let _ = writeln!(
                    out,
                    "\nrequests the kernel sent {label} (median run; by kind per unit of work where there is one)"
                );
                let _ = writeln!(out, "{:<10} {:>10} {:>14}  by kind", "workload", "requests", "per unit");
            }
            let total = row.median.requests.total();
            let per = match (row.per_unit(total), row.median.units) {
                (Some(x), Some((_, unit))) => format!("{} / {unit}", format_count(x)),
                _ => "-".into(),
            };
            // Kinds that would show as 0.00 per unit go together.
            let mut by_kind = Vec::new();
            let mut rare = false;
            for (k, n) in kinds(&row.median.requests) {
                match row.per_unit(n) {
                    Some(x) if x < 0.005 => rare = true,
                    Some(x) => by_kind.push(format!("{k} {}", format_count(x))),
                    None => by_kind.push(format!("{k} {n}")),
                }
            }
            if rare {
                by_kind.push("others <0.01".into());
            }
            // The kinds wrap under their heading within [`WIDE`] columns.
            let mut line = format!("{:<10} {:>10} {:>14} ", row.median.workload, total, per);
            let indent = line.chars().count();
            for (i, kind) in by_kind.iter().enumerate() {
                let sep = if i + 1 < by_kind.len() { "," } else { "" };
                if i > 0 && line.chars().count() + 1 + kind.len() + sep.len() > WIDE {
                    let _ = writeln!(out, "{line}");
                    line = " ".repeat(indent);
                }
                let _ = write!(line, " {kind}{sep}");
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Ratio columns: each target against tmpfs, and each target that is
    /// neither against disk.
    fn ratio_columns(&self) -> Vec<(usize, usize)> {
        let mut cols = Vec::new();
        for (reference, skip) in [(self.tmpfs, None), (self.disk, self.tmpfs)] {
            let Some(r) = reference else { continue };
            for t in 0..self.targets.len() {
                if t != r && Some(t) != skip {
                    cols.push((t, r));
                }
            }
        }
        cols
    }

    /// The human table: values and ratios side by side while that fits in
    /// [`WIDE`] columns; with many targets, one block of values and one
    /// block of ratios per reference instead, each as wide as the targets.
    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tmpfsd bench: medians of {} repetition{}; ratios are speed (above 1 is faster; for seconds, the inverse)",
            self.reps,
            if self.reps == 1 { "" } else { "s" }
        );
        let w = self
            .targets
            .iter()
            .map(|t| t.label.chars().count())
            .max()
            .unwrap_or(0)
            .max(10);
        for t in &self.targets {
            let _ = writeln!(out, "  {:<w$} {} ({})", t.label, t.path.display(), t.describe());
        }
        if let Some(host) = &self.host {
            let _ = writeln!(out, "{}", host.describe());
        }
        out.push('\n');
        let values: Vec<Column> = (0..self.targets.len())
            .map(|t| Column {
                heading: self.targets[t].label.clone(),
                cells: self
                    .rows
                    .iter()
                    .map(|row| row.median(t).map_or_else(|| "-".into(), format_value))
                    .collect(),
            })
            .collect();
        let ratio = |t: usize, r: usize, heading: String| Column {
            heading,
            cells: self
                .rows
                .iter()
                .map(|row| row.ratio(t, r).map_or_else(|| "-".into(), |x| format!("{x:.2}x")))
                .collect(),
        };
        let ratios: Vec<Column> = self
            .ratio_columns()
            .into_iter()
            .map(|(t, r)| ratio(t, r, format!("{}/{}", self.targets[t].label, self.targets[r].label)))
            .collect();
        let all: Vec<&Column> = values.iter().chain(&ratios).collect();
        if LEAD + all.iter().map(|c| 1 + c.width()).sum::<usize>() <= WIDE {
            out.push_str(&self.grid(&all));
            out.push_str(&self.requests_table());
            return out;
        }
        out.push_str("values\n");
        out.push_str(&self.grid(&values.iter().collect::<Vec<_>>()));
        for reference in [self.tmpfs, self.disk].into_iter().flatten() {
            let cols: Vec<Column> = self
                .ratio_columns()
                .into_iter()
                .filter(|&(_, r)| r == reference)
                .map(|(t, r)| ratio(t, r, self.targets[t].label.clone()))
                .collect();
            let target = &self.targets[reference];
            let _ = writeln!(out, "\nspeed relative to {} ({})", target.label, target.describe());
            out.push_str(&self.grid(&cols.iter().collect::<Vec<_>>()));
        }
        out.push_str(&self.requests_table());
        out
    }

    /// Rows of metric, unit and the columns, right-aligned; columns that
    /// would pass [`WIDE`] continue in another grid below.
    fn grid(&self, columns: &[&Column]) -> String {
        let mut out = String::new();
        let mut rest = columns;
        while !rest.is_empty() {
            // At least one column per grid, however wide.
            let mut used = LEAD + 1 + rest[0].width();
            let mut n = 1;
            while n < rest.len() && used + 1 + rest[n].width() <= WIDE {
                used += 1 + rest[n].width();
                n += 1;
            }
            let (now, later) = rest.split_at(n);
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = write!(out, "{:<20} {:<9}", "metric", "unit");
            for c in now {
                let _ = write!(out, " {:>w$}", c.heading, w = c.width());
            }
            out.push('\n');
            for (i, row) in self.rows.iter().enumerate() {
                let _ = write!(out, "{:<20} {:<9}", row.metric, row.unit);
                for c in now {
                    let _ = write!(out, " {:>w$}", c.cells[i], w = c.width());
                }
                out.push('\n');
            }
            rest = later;
        }
        out
    }

    /// Everything, for machines: samples, medians and ratios.
    pub(super) fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let per_target: Vec<Value> = self
                    .targets
                    .iter()
                    .enumerate()
                    .map(|(t, target)| {
                        json!({
                            "target": target.label,
                            "samples": row.samples[t],
                            "median": row.median(t),
                            "ratio_to_tmpfs": self.tmpfs.and_then(|r| row.ratio(t, r)),
                            "ratio_to_disk": self.disk.and_then(|r| row.ratio(t, r)),
                        })
                    })
                    .collect();
                json!({
                    "metric": row.metric,
                    "unit": row.unit,
                    "better": row.better,
                    "results": per_target,
                })
            })
            .collect();
        let requests: Vec<Value> = self
            .request_rows()
            .iter()
            .map(|row| {
                let total = row.median.requests.total();
                json!({
                    "workload": row.median.workload,
                    "target": self.targets[row.median.target].label,
                    "totals": row.totals,
                    "median": total,
                    "units": row.median.units.map(|(n, _)| n),
                    "unit": row.median.units.map(|(_, u)| u),
                    "per_unit": row.per_unit(total),
                    "by_kind": row.median.requests,
                })
            })
            .collect();
        json!({
            "repetitions": self.reps,
            "host": self.host,
            "targets": self.targets,
            "metrics": rows,
            "requests": requests,
        })
    }

    /// A horizontal bar chart: one group per metric, one bar per target,
    /// the bar's length its speed relative to the reference (tmpfs, else
    /// disk, else the first target) on a log scale, labelled with the
    /// median and the ratio.
    pub(super) fn svg(&self) -> String {
        const COLORS: [&str; 6] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
        let reference = self.tmpfs.or(self.disk).unwrap_or(0);
        let ratios: Vec<Vec<Option<f64>>> = self
            .rows
            .iter()
            .map(|row| (0..self.targets.len()).map(|t| row.ratio(t, reference)).collect())
            .collect();
        let all = ratios.iter().flatten().flatten().copied();
        let lo = all.clone().fold(1.0f64, f64::min).log10().floor().min(-1.0);
        let hi = all.fold(1.0f64, f64::max).log10().ceil().max(1.0);
        let (left, right, bar, gap) = (190.0, 250.0, 16.0, 14.0);
        let plot_w = 520.0;
        let width = left + plot_w + right;
        // The legend, wrapped within the width: (x, line, text) per target.
        let mut legend = Vec::new();
        let (mut lx, mut line) = (left, 0.0);
        for target in &self.targets {
            let text = match target.kind.short() {
                k if k == target.label => target.label.clone(),
                k => format!("{} ({k})", target.label),
            };
            let w = 24.0 + 7.0 * text.chars().count() as f64;
            if lx > left && lx + w > width - 10.0 {
                (lx, line) = (left, line + 1.0);
            }
            legend.push((lx, line, text));
            lx += w;
        }
        let top = 106.0 + 18.0 * line;
        let n = self.targets.len() as f64;
        let group_h = n * bar + gap;
        let height = top + group_h * self.rows.len() as f64 + 50.0;
        let x = |r: f64| left + (r.log10() - lo) / (hi - lo) * plot_w;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="24" font-size="16" font-weight="bold">tmpfsd bench: speed relative to {} ({}; log scale, right is faster)</text>"#,
            xml(&self.targets[reference].label),
            xml(&self.targets[reference].describe())
        );
        let options: String = self
            .targets
            .iter()
            .filter_map(|t| {
                t.mount_options
                    .as_ref()
                    .map(|o| format!("; {} mounted with -o {o}", t.label))
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<text x="{left}" y="42" fill="#555">medians of {} repetition{}; for times (untar, rm_rf) the inverse ratio{}</text>"##,
            self.reps,
            if self.reps == 1 { "" } else { "s" },
            xml(&options),
        );
        if let Some(host) = &self.host {
            let _ = writeln!(
                s,
                r##"<text x="{left}" y="58" fill="#555">{}</text>"##,
                xml(&host.short())
            );
        }
        for (t, (lx, line, text)) in legend.iter().enumerate() {
            let c = COLORS[t % COLORS.len()];
            let y = 70.0 + 18.0 * line;
            let _ = writeln!(s, r#"<rect x="{lx}" y="{y}" width="12" height="12" fill="{c}"/>"#);
            let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 16.0, y + 11.0, xml(text));
        }
        // Decade grid lines, with 1 (the reference) stronger.
        let bottom = height - 40.0;
        let mut d = lo;
        while d <= hi + 1e-9 {
            let gx = x(10f64.powf(d));
            let (stroke, w) = if d.abs() < 1e-9 { ("#000", 1.5) } else { ("#ccc", 1.0) };
            let _ = writeln!(
                s,
                r#"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{bottom}" stroke="{stroke}" stroke-width="{w}"/>"#
            );
            let _ = writeln!(
                s,
                r##"<text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555">{}x</text>"##,
                bottom + 16.0,
                format_ratio(10f64.powf(d))
            );
            d += 1.0;
        }
        for (i, row) in self.rows.iter().enumerate() {
            let gy = top + group_h * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
                left - 8.0,
                gy + n * bar / 2.0 + 4.0,
                xml(row.metric)
            );
            for (t, ratio) in ratios[i].iter().enumerate() {
                let y = gy + bar * t as f64;
                let c = COLORS[t % COLORS.len()];
                let label = match (row.median(t), ratio) {
                    (Some(v), Some(r)) => format!("{} {} ({}x)", format_value(v), row.unit, format_ratio(*r)),
                    _ => "-".into(),
                };
                if let Some(r) = ratio {
                    let x0 = left;
                    let x1 = x(r.clamp(10f64.powf(lo), 10f64.powf(hi)));
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x0}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}"/>"#,
                        y + 1.0,
                        (x1 - x0).max(1.0),
                        bar - 2.0
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#333">{}</text>"##,
                    left + plot_w + 6.0,
                    y + bar - 4.0,
                    xml(&label)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A count per unit: two decimals for small figures, whole numbers above
/// 100, and "<0.01" rather than a zero for a few in many units.
fn format_count(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x > 0.0 && x < 0.005 {
        "<0.01".into()
    } else {
        format!("{x:.2}")
    }
}

fn format_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 0.1 {
        format!("{:.2}", r)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        let s = format!("{r:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn target(label: &str, kind: Kind) -> Target {
        Target {
            label: label.into(),
            path: PathBuf::from("/x"),
            kind,
            mount_options: None,
            counted_at: None,
        }
    }

    fn m(target: usize, metric: &'static str, better: Better, value: f64) -> Measurement {
        Measurement {
            target,
            figure: Figure {
                metric,
                unit: if better == Better::Lower { "s" } else { "MB/s" },
                better,
                value,
            },
        }
    }

    fn report() -> Report {
        let targets = vec![
            target("tmpfsd", Kind::Tmpfsd),
            target("disk", Kind::Disk),
            target("tmpfs", Kind::Tmpfs),
        ];
        let mut ms = Vec::new();
        for (t, vals) in [
            (0, [100.0, 300.0, 200.0]),
            (1, [50.0, 50.0, 60.0]),
            (2, [400.0, 400.0, 1.0]),
        ] {
            for v in vals {
                ms.push(m(t, "seq_write", Better::Higher, v));
            }
        }
        ms.push(m(0, "untar", Better::Lower, 2.0));
        ms.push(m(1, "untar", Better::Lower, 4.0));
        ms.push(m(2, "untar", Better::Lower, 1.0));
        Report::new(targets, 3, ms)
    }

    #[test]
    fn medians_and_ratios() {
        let r = report();
        let row = &r.rows[0];
        assert_eq!(row.median(0), Some(200.0));
        assert_eq!(row.median(2), Some(400.0));
        assert_eq!(row.ratio(0, 2), Some(0.5));
        assert_eq!(row.ratio(0, 1), Some(4.0));
        // Seconds: half the time is twice the speed.
        assert_eq!(r.rows[1].ratio(0, 1), Some(2.0));
        assert_eq!(r.rows[1].ratio(0, 2), Some(0.5));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn many_targets_split_the_table_into_blocks_that_fit() {
        let mut targets = vec![target("tmpfs", Kind::Tmpfs), target("disk", Kind::Disk)];
        targets.extend((0..6).map(|i| target(&format!("some-fuse-mount-{i}"), Kind::Fuse)));
        let mut ms = Vec::new();
        for t in 0..targets.len() {
            ms.push(m(t, "seq_write", Better::Higher, 100.0 * (t + 1) as f64));
        }
        let table = Report::new(targets, 1, ms).table();
        let widest = table.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= WIDE, "{widest} columns:\n{table}");
        assert!(table.contains("\nvalues\n"), "{table}");
        assert!(table.contains("speed relative to tmpfs (kernel tmpfs)"), "{table}");
        assert!(table.contains("speed relative to disk (disk)"), "{table}");
        // seq_write of some-fuse-mount-5 (800) against tmpfs (100) and disk (200).
        // Its cells are the last of each block (the blocks wrap).
        let line = |block: &str| {
            let rest = &table[table.find(block).unwrap() + block.len()..];
            let rest = &rest[..rest.find("speed relative").unwrap_or(rest.len())];
            rest.lines().rfind(|l| l.starts_with("seq_write")).unwrap().to_string()
        };
        assert!(line("values").trim_end().ends_with("800.0"), "{table}");
        assert!(line("relative to tmpfs").trim_end().ends_with("8.00x"), "{table}");
        assert!(line("relative to disk").trim_end().ends_with("4.00x"), "{table}");
        // Three targets still get the one table.
        assert!(!report().table().contains("\nvalues\n"));
    }

    fn sample(workload: &'static str, units: Option<(u64, &'static str)>, lookup: u64, write: u64) -> RequestSample {
        RequestSample {
            target: 0,
            workload,
            units,
            requests: Requests {
                lookup,
                write,
                ..Requests::default()
            },
        }
    }

    #[test]
    fn each_counted_target_gets_its_own_requests_section() {
        let on = |target, workload| RequestSample {
            target,
            ..sample(workload, Some((1, "file")), 1, 0)
        };
        // Run order: workloads interleave targets; repetitions repeat.
        let r = report().with_requests(vec![
            on(2, "small"),
            on(0, "small"),
            on(2, "tree"),
            on(0, "tree"),
            on(2, "small"),
            on(0, "small"),
        ]);
        let table = r.table();
        let heads: Vec<usize> = ["sent tmpfsd ", "sent tmpfs "]
            .iter()
            .map(|h| table.find(h).unwrap_or_else(|| panic!("{h}: {table}")))
            .collect();
        assert!(heads[0] < heads[1], "target order: {table}");
        assert_eq!(table.lines().filter(|l| l.starts_with("small ")).count(), 2, "{table}");
        let rows: Vec<(Value, Value)> = r.json()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["target"].clone(), x["workload"].clone()))
            .collect();
        assert_eq!(
            rows,
            [
                ("tmpfsd", "small"),
                ("tmpfsd", "tree"),
                ("tmpfs", "small"),
                ("tmpfs", "tree")
            ]
            .map(|(t, w)| (json!(t), json!(w)))
        );
    }

    #[test]
    fn requests_show_the_median_run_per_unit_of_work() {
        let file = Some((10, "file"));
        let r = report().with_requests(vec![
            sample("small", file, 10, 30),
            sample("rand", None, 0, 5),
            sample("meta", Some((1000, "call")), 1, 20),
            sample("hot", Some((1000, "call")), 1, 0),
            sample("small", file, 10, 10),
            sample("small", file, 20, 20),
        ]);
        let table = r.table();
        let line = |w: &str| -> Vec<&str> {
            table
                .lines()
                .find(|l| l.starts_with(w))
                .unwrap()
                .split_whitespace()
                .collect()
        };
        // Totals 40, 20, 40: the median run is the first of 40.
        assert_eq!(
            line("small "),
            ["small", "40", "4.00", "/", "file", "write", "3.00,", "lookup", "1.00"],
            "{table}"
        );
        assert_eq!(line("rand "), ["rand", "5", "-", "write", "5"]);
        assert_eq!(
            line("meta "),
            ["meta", "21", "0.02", "/", "call", "write", "0.02,", "others", "<0.01"]
        );
        assert_eq!(line("hot "), ["hot", "1", "<0.01", "/", "call", "others", "<0.01"]);
        assert!(table.contains("requests the kernel sent tmpfsd"), "{table}");
        // Many kinds wrap under the heading.
        let mut many = Requests::default();
        (
            many.lookup,
            many.forget,
            many.getattr,
            many.setattr,
            many.mknod,
            many.mkdir,
        ) = (1, 2, 3, 4, 5, 6);
        (
            many.unlink,
            many.rmdir,
            many.symlink,
            many.write,
            many.read,
            many.readdirplus,
        ) = (7, 8, 9, 10, 11, 12);
        let wide =
            Report::new(vec![target("tmpfsd", Kind::Tmpfsd)], 1, Vec::new()).with_requests(vec![RequestSample {
                target: 0,
                workload: "tree",
                units: Some((3, "file")),
                requests: many,
            }]);
        let table = wide.table();
        let lines: Vec<&str> = table.lines().skip_while(|l| !l.starts_with("tree")).collect();
        assert!(
            lines.len() >= 2 && lines.iter().all(|l| l.chars().count() <= WIDE),
            "{table}"
        );
        assert_eq!(table.matches(" 0.33").count(), 1, "every kind once: {table}");
        assert!(lines[1].starts_with(&" ".repeat(30)), "{table}");
        let j = r.json();
        assert_eq!(j["requests"][0]["workload"], "small");
        assert_eq!(j["requests"][0]["totals"], json!([40, 20, 40]));
        assert_eq!(j["requests"][0]["per_unit"], 4.0);
        assert_eq!(j["requests"][0]["by_kind"]["write"], 30);
        assert_eq!(j["requests"][1]["per_unit"], Value::Null);
        assert_eq!(j["requests"][2]["by_kind"]["lookup"], 1);
    }

    #[test]
    fn table_json_and_plot_carry_the_figures() {
        let r = report();
        let table = r.table();
        assert!(!table.contains("requests the kernel"), "nothing counted: {table}");
        assert!(table.contains("tmpfsd/tmpfs"), "{table}");
        assert!(table.contains("tmpfsd/disk"), "{table}");
        assert!(table.contains("disk/tmpfs"), "{table}");
        assert!(table.contains("0.50x") && table.contains("4.00x"), "{table}");
        let j = r.json();
        assert_eq!(j["metrics"][0]["results"][0]["median"], 200.0);
        assert_eq!(j["metrics"][0]["results"][0]["ratio_to_tmpfs"], 0.5);
        assert_eq!(j["metrics"][1]["results"][0]["ratio_to_disk"], 2.0);
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("seq_write") && svg.contains("200.0 MB/s (0.5x)"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 6, "background, legend, bars");
        assert!(!table.contains("host:") && j["host"].is_null(), "no host given");
    }

    #[test]
    fn the_host_is_named_in_every_form() {
        let r = report().with_host(Host {
            kernel: Some("6.18.0-test".into()),
            cpus: 2,
            fuse_wake_here: Some(false),
            guest_halt_poll_ns: Some(0),
        });
        let table = r.table();
        let line = table.lines().find(|l| l.starts_with("host: ")).expect(&table);
        assert!(line.contains("2 CPUs, kernel 6.18.0-test"), "{line}");
        assert!(
            line.contains("haltpoll.guest_halt_poll_ns=0, fuse.wake_here=N"),
            "{line}"
        );
        // Above the figures, within the table's width.
        assert!(table.find("host: ") < table.find("metric"), "{table}");
        assert!(line.chars().count() <= WIDE, "{line}");
        let j = r.json();
        assert_eq!(j["host"]["fuse_wake_here"], false, "{}", j["host"]);
        assert_eq!(j["host"]["guest_halt_poll_ns"], 0, "{}", j["host"]);
        assert_eq!(j["host"]["kernel"], "6.18.0-test", "{}", j["host"]);
        assert!(r
            .svg()
            .contains(">2 CPUs, kernel 6.18.0-test, haltpoll.guest_halt_poll_ns=0, fuse.wake_here=N</text>"));
    }

    #[test]
    fn the_plot_legend_names_what_each_directory_is_and_stays_within_the_width() {
        // Labels that are the kind's own name stay as they are.
        let svg = report().svg();
        assert!(svg.contains(">tmpfsd</text>") && svg.contains(">disk</text>"), "{svg}");
        assert!(svg.contains("speed relative to tmpfs (kernel tmpfs;"), "{svg}");
        // Given directories are named by their path: the legend adds the kind.
        let mut targets = vec![target("scratch-on-tmpfsd", Kind::Tmpfsd), target("ref", Kind::Tmpfs)];
        targets.extend((0..6).map(|i| target(&format!("some-fuse-mount-{i}"), Kind::Fuse)));
        let ms = (0..targets.len())
            .map(|t| m(t, "seq_write", Better::Higher, 100.0 + t as f64))
            .collect();
        let svg = Report::new(targets, 1, ms).svg();
        assert!(svg.contains(">scratch-on-tmpfsd (tmpfsd)</text>"), "{svg}");
        assert!(svg.contains(">some-fuse-mount-5 (FUSE)</text>"), "{svg}");
        assert!(svg.contains("speed relative to ref (kernel tmpfs;"), "{svg}");
        let attr = |line: &str, name: &str| -> f64 {
            let v = line.split(&format!(" {name}=\"")).nth(1).expect(line);
            v.split('"').next().unwrap().parse().expect(line)
        };
        let width = attr(svg.lines().next().unwrap(), "width");
        let mut legend_rows: Vec<f64> = Vec::new();
        for line in svg.lines().filter(|l| l.contains(r#"width="12" height="12""#)) {
            // 7 px per character is what the legend allows for its text.
            assert!(attr(line, "x") + 24.0 + 7.0 * 24.0 <= width, "{line}");
            if !legend_rows.contains(&attr(line, "y")) {
                legend_rows.push(attr(line, "y"));
            }
        }
        assert!(legend_rows.len() > 1, "eight long names need more than one legend row");
        // The bars start below the legend.
        let legend_bottom = legend_rows.iter().copied().fold(0.0, f64::max) + 12.0;
        let first_bar = svg.lines().find(|l| l.contains(r#"height="14.0""#)).expect(&svg);
        assert!(
            attr(first_bar, "y") > legend_bottom,
            "{first_bar} above {legend_bottom}"
        );
    }
}
