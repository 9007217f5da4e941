//! The report of `rivet bench`: a table for people, JSON for machines, Markdown for a pull
//! request, and the exit status.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use rivet::{Error, Result};

use super::rows::{Report, Row};
use super::{plot, BenchArgs};

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn sci(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1e}"))
}

/// A latency in milliseconds with three significant digits at most, so µs and seconds both read.
fn latency(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 1.0 => format!("{v:.4}"),
        Some(v) if v < 100.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.0}"),
    }
}

fn status(row: &Row) -> String {
    let mut s = row.status.as_str().to_owned();
    if row.stable == Some(false) {
        s.push_str(" (unstable)");
    }
    s
}

const HEADER: [&str; 16] = [
    "model",
    "backend",
    "batch",
    "clients",
    "load ms",
    "1st ms",
    "p50 ms",
    "p90 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "inf/s",
    "samples/s",
    "peak RSS MiB",
    "max abs diff",
    "result",
];

fn cells(row: &Row) -> [String; 16] {
    let l = row.latency_ms;
    [
        row.model.clone(),
        row.backend.clone(),
        row.batch.to_string(),
        row.concurrency.to_string(),
        num(row.load_ms, 1),
        num(row.first_inference_ms, 2),
        latency(l.map(|l| l.p50)),
        latency(l.map(|l| l.p90)),
        latency(l.map(|l| l.p95)),
        latency(l.map(|l| l.p99)),
        latency(l.map(|l| l.max)),
        num(row.inferences_per_s, 0),
        num(row.samples_per_s, 0),
        num(row.peak_rss_mib, 0),
        sci(row.parity.as_ref().and_then(|p| p.max_abs_diff)),
        status(row),
    ]
}

/// The notes under a table: the build, each model's inputs and reference, then each row's error.
fn notes(report: &Report) -> Vec<String> {
    let mut notes = vec![format!("build: {}", report.build)];
    notes.extend(
        report
            .models
            .iter()
            .map(|m| format!("{}: inputs: {}; parity against: {}", m.model, m.inputs, m.reference)),
    );
    for row in &report.results {
        if let Some(e) = &row.error {
            notes.push(format!("{} on {} (batch {}): {e}", row.backend, row.model, row.batch));
        } else if let Some(e) = row.parity.as_ref().and_then(|p| p.error.as_ref()) {
            notes.push(format!(
                "{} on {} (batch {}): outputs not comparable: {e}",
                row.backend, row.model, row.batch
            ));
        }
        if let Some(s) = &row.shadow {
            notes.push(format!(
                "{} on {} (batch {}, {} clients): {} requests, {} compared ({} matched, {} diverged), \
                 {} dropped (the shadow was busy), {} shadow errors; shadow p50 {:.4} ms",
                row.backend,
                row.model,
                row.batch,
                row.concurrency,
                s.requests,
                s.compared,
                s.matched,
                s.diverged,
                s.dropped,
                s.candidate_errors,
                s.candidate_latency.p50_ms
            ));
        }
    }
    notes
}

/// The table printed for people.
pub fn table(report: &Report) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(HEADER);
    for row in &report.results {
        table.add_row(cells(row));
    }
    let mut out = format!("{table}\n");
    for note in notes(report) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// The same table in GitHub Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let threads = report.settings.get("threads").and_then(|t| t.as_u64());
    let _ = writeln!(
        out,
        "Rivet {} ({}) `rivet bench` on {} CPUs, {} thread(s) per operator; latency in ms.\n",
        report.rivet_version,
        report.build,
        report.cpus,
        threads.map_or("default".into(), |t| t.to_string())
    );
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        HEADER
            .iter()
            .map(|h| if *h == "model" || *h == "backend" || *h == "result" { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in &report.results {
        let _ = writeln!(out, "| {} |", cells(row).map(|c| c.replace('|', "\\|")).join(" | "));
    }
    out.push('\n');
    for note in notes(report) {
        let _ = writeln!(out, "- {}", note.replace('|', "\\|"));
    }
    out
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::file(path, e))
}

/// Prints the table (unless JSON goes to stdout) and writes the files asked for.
pub fn write(args: &BenchArgs, report: &Report) -> Result<()> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::InvalidInput { input: Some("--json".into()), message: e.to_string() })?;
    match &args.json {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        other => {
            print!("{}", table(report));
            if let Some(path) = other {
                write_file(path, &json)?;
                println!("json: {}", path.display());
            }
        }
    }
    let to_stderr = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let say = |what: &str, path: &Path| {
        if to_stderr {
            eprintln!("{what}: {}", path.display());
        } else {
            println!("{what}: {}", path.display());
        }
    };
    if let Some(path) = &args.markdown {
        write_file(path, &markdown(report))?;
        say("markdown", path);
    }
    if let Some(path) = &args.plot {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        }
        plot::draw(report, path)?;
        say("chart", path);
    }
    Ok(())
}

/// Success unless a row failed, mismatched or crashed, or a model ran on no backend.
pub fn verdict(report: &Report) -> ExitCode {
    let mut problems = Vec::new();
    for row in &report.results {
        if row.status.is_failure() {
            problems.push(format!(
                "{} on {} batch {}: {}",
                row.backend,
                row.model,
                row.batch,
                row.status.as_str()
            ));
        }
    }
    for model in &report.models {
        if !report.results.iter().any(|r| r.model == model.model && r.latency_ms.is_some()) {
            problems.push(format!("{}: no backend ran it", model.model));
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {}", problems.join("; "));
        ExitCode::FAILURE
    }
}
