//! `rivet shadow report DIR`: what a shadow's capture directory holds, as tables (or JSON) and
//! a histogram of each output's largest difference.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use plotters::prelude::*;
use rivet::shadow::{CaptureRecord, ShadowStats};
use rivet::{Error, Result};
use serde::Serialize;

/// What `rivet shadow` does.
#[derive(Subcommand)]
pub(crate) enum ShadowCommand {
    /// Summarise a shadow's capture directory: its counts, a table per output and the worst
    /// requests; with --plot, a histogram of each output's largest difference.
    Report(ReportArgs),
}

/// `rivet shadow report`'s arguments.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The capture directory (`capture_dir` of the shadow).
    dir: PathBuf,
    /// How many of the worst requests to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Draw a histogram of the largest absolute difference per request, per output (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// One output's figures over every capture.
#[derive(Debug, Serialize)]
struct OutputSummary {
    name: String,
    diverged: usize,
    worst_abs_diff: f64,
    median_abs_diff: f64,
    worst_rel_diff: f64,
    elements_outside: u64,
    mean_argmax_mismatch: Option<f64>,
}

/// One of the worst requests.
#[derive(Debug, Serialize)]
struct Worst {
    seq: u64,
    time_unix_ms: u64,
    request_id: Option<String>,
    output: String,
    max_abs_diff: f64,
    outside: u64,
    argmax_mismatch: Option<f64>,
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    dir: PathBuf,
    captures: usize,
    stats: Option<ShadowStats>,
    outputs: Vec<OutputSummary>,
    worst: Vec<Worst>,
}

/// Runs `rivet shadow ...`.
pub(crate) fn shadow(command: &ShadowCommand) -> Result<()> {
    match command {
        ShadowCommand::Report(args) => report(args),
    }
}

/// Reads every capture of `dir`, oldest first. A folder without a readable record is an error
/// naming it: a capture is renamed into place only once complete.
fn read_captures(dir: &Path) -> Result<Vec<CaptureRecord>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read the capture directory: {e}")))?;
    let mut folders: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok().map(|n| (n, e.path())))
        .collect();
    folders.sort();
    folders
        .into_iter()
        .map(|(_, folder)| {
            let path = folder.join("record.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
            serde_json::from_str(&text).map_err(|e| Error::file(&path, format!("not a capture record: {e}")))
        })
        .collect()
}

/// The outputs the captures name, in the order they first appear.
fn output_names(records: &[CaptureRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for output in records.iter().flat_map(|r| &r.outputs) {
        if !names.contains(&output.name) {
            names.push(output.name.clone());
        }
    }
    names
}

fn summarise(dir: &Path, top: usize) -> Result<Report> {
    let records = read_captures(dir)?;
    let stats_path = dir.join("stats.json");
    let stats = match std::fs::read_to_string(&stats_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| Error::file(&stats_path, format!("not a shadow's stats: {e}")))?,
        ),
        Err(_) => None,
    };
    let names = output_names(&records);
    let outputs = names
        .iter()
        .map(|name| {
            let figures: Vec<_> =
                records.iter().flat_map(|r| r.outputs.iter().filter(|o| &o.name == name)).collect();
            let mut abs: Vec<f64> = figures.iter().map(|o| o.max_abs_diff).collect();
            abs.sort_by(f64::total_cmp);
            let argmax: Vec<f64> = figures.iter().filter_map(|o| o.argmax_mismatch).collect();
            OutputSummary {
                name: name.clone(),
                diverged: figures.iter().filter(|o| o.diverged()).count(),
                worst_abs_diff: abs.last().copied().unwrap_or(0.0),
                median_abs_diff: abs.get(abs.len() / 2).copied().unwrap_or(0.0),
                worst_rel_diff: figures.iter().map(|o| o.max_rel_diff).fold(0.0, f64::max),
                elements_outside: figures.iter().map(|o| o.outside).sum(),
                mean_argmax_mismatch: (!argmax.is_empty())
                    .then(|| argmax.iter().sum::<f64>() / argmax.len() as f64),
            }
        })
        .collect();
    let mut worst: Vec<Worst> = records
        .iter()
        .flat_map(|r| {
            r.outputs.iter().map(move |o| Worst {
                seq: r.seq,
                time_unix_ms: r.time_unix_ms,
                request_id: r.request_id.clone(),
                output: o.name.clone(),
                max_abs_diff: o.max_abs_diff,
                outside: o.outside,
                argmax_mismatch: o.argmax_mismatch,
            })
        })
        .collect();
    worst.sort_by(|a, b| b.max_abs_diff.total_cmp(&a.max_abs_diff).then(a.seq.cmp(&b.seq)));
    worst.truncate(top);
    Ok(Report { dir: dir.to_path_buf(), captures: records.len(), stats, outputs, worst })
}

fn report(args: &ReportArgs) -> Result<()> {
    if let Some(plot) = &args.plot {
        crate::bench::plot::check_path(plot)?;
    }
    let report = summarise(&args.dir, args.top)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::file(&args.dir, e))?);
    } else {
        print!("{}", render(&report));
    }
    if let Some(plot) = &args.plot {
        let records = read_captures(&args.dir)?;
        draw(&records, plot)?;
        if !args.json {
            println!("plot: {}", plot.display());
        }
    }
    Ok(())
}

fn share(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

/// The report as text: counts, the per-output table, the worst requests.
fn render(report: &Report) -> String {
    let mut out = format!("{}: {} captured request(s)\n", report.dir.display(), report.captures);
    if let Some(s) = &report.stats {
        out += &format!(
            "shadow: {} requests; {} compared: {} matched, {} diverged; {} candidate errors, {} dropped, {} not sampled\n",
            s.requests, s.compared, s.matched, s.diverged, s.candidate_errors, s.dropped, s.skipped
        );
        out += &format!(
            "latency p50/p99: primary {:.3}/{:.3} ms, candidate {:.3}/{:.3} ms\n",
            s.primary_latency.p50_ms,
            s.primary_latency.p99_ms,
            s.candidate_latency.p50_ms,
            s.candidate_latency.p99_ms
        );
    }
    let mut outputs = Table::new();
    outputs.load_preset(UTF8_FULL_CONDENSED).set_header([
        "output",
        "diverged",
        "worst max |diff|",
        "median max |diff|",
        "worst max rel",
        "elements outside",
        "argmax differs (mean)",
    ]);
    for o in &report.outputs {
        outputs.add_row([
            o.name.clone(),
            o.diverged.to_string(),
            format!("{:.3e}", o.worst_abs_diff),
            format!("{:.3e}", o.median_abs_diff),
            format!("{:.3e}", o.worst_rel_diff),
            o.elements_outside.to_string(),
            share(o.mean_argmax_mismatch),
        ]);
    }
    out += &format!("{outputs}\n");
    let mut worst = Table::new();
    worst.load_preset(UTF8_FULL_CONDENSED).set_header([
        "capture",
        "request id",
        "output",
        "max |diff|",
        "outside",
        "argmax differs",
    ]);
    for w in &report.worst {
        worst.add_row([
            format!("{:08}", w.seq),
            w.request_id.clone().unwrap_or_else(|| "–".into()),
            w.output.clone(),
            format!("{:.3e}", w.max_abs_diff),
            w.outside.to_string(),
            share(w.argmax_mismatch),
        ]);
    }
    out += &format!("worst {} request(s):\n{worst}\n", report.worst.len());
    out
}

/// A histogram of log10(max |diff|) per capture, one series per output.
fn draw(records: &[CaptureRecord], path: &Path) -> Result<()> {
    crate::bench::plot::register_font();
    let size = (960, 480);
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let result = if svg {
        paint(&SVGBackend::new(path, size).into_drawing_area(), records)
    } else {
        paint(&BitMapBackend::new(path, size).into_drawing_area(), records)
    };
    result.map_err(|e| Error::file(path, format!("cannot draw the histogram: {e}")))
}

fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    records: &[CaptureRecord],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let names = output_names(records);
    // Bins a quarter of a decade wide over the differences seen (0 and infinity left out).
    let logs = |name: &str| -> Vec<f64> {
        records
            .iter()
            .flat_map(|r| r.outputs.iter().filter(|o| o.name == name))
            .map(|o| o.max_abs_diff)
            .filter(|v| *v > 0.0 && v.is_finite())
            .map(f64::log10)
            .collect()
    };
    let all: Vec<f64> = names.iter().flat_map(|n| logs(n)).collect();
    let lo = (all.iter().copied().fold(f64::INFINITY, f64::min) * 4.0).floor() / 4.0;
    let hi = (all.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 4.0).floor() / 4.0 + 0.25;
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (-8.0, 0.0) };
    let bins = ((hi - lo) / 0.25).round().max(1.0) as usize;
    let counts: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            let mut c = vec![0; bins];
            for v in logs(n) {
                c[(((v - lo) / 0.25) as usize).min(bins - 1)] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(root)
        .caption("Shadow captures: largest |candidate − primary| per request", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0..top + 1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("max |diff| (log10)")
        .y_desc("requests")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(e)?;
    let width = 0.25 / names.len().max(1) as f64;
    for (k, (name, c)) in names.iter().zip(&counts).enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(c.iter().enumerate().filter(|(_, n)| **n > 0).map(|(b, n)| {
                let x = lo + b as f64 * 0.25 + k as f64 * width;
                Rectangle::new([(x, 0), (x + width, *n)], color.filled())
            }))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}
