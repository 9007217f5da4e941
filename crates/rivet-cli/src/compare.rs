//! `rivet compare`: the same inputs through every backend that loads a model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use rivet::{Backend, ErrorKind, Outputs, Result, Tensor};
use serde::Serialize;

use crate::bench::stats::percentile;
use crate::bench::RowStatus as Status;
use crate::inputs::{self, TensorArg};
use crate::{run_model, LoadArgs};

/// Arguments of `rivet compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Model files (.pt, .onnx) or folders holding them.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// An input: NAME=FILE.npy, or FILE.npy for the next input in signature order. Default: the
    /// model folder's first case (cases/*/input.NAME.npy), else random inputs (seed 0).
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy")]
    inputs: Vec<TensorArg>,
    /// A reference output: NAME=FILE.npy or FILE.npy. Default: the case's output.NAME.npy, else
    /// the first backend's outputs.
    #[arg(long = "reference", short = 'r', value_name = "NAME=FILE.npy")]
    references: Vec<TensorArg>,
    /// Which case folder under MODEL_DIR/cases to use (default: the first by name).
    #[arg(long)]
    case: Option<String>,
    /// Backends to try, comma-separated (default: every backend that reads the format).
    #[arg(long = "backend", short = 'b', value_delimiter = ',')]
    backends: Vec<Backend>,
    /// Timed runs per backend.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Absolute tolerance: outputs match when |a - ref| <= atol + rtol * |ref|.
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// One backend's result on one model file.
#[derive(Serialize)]
struct Row {
    file: PathBuf,
    backend: String,
    status: Status,
    error: Option<String>,
    load_ms: Option<f64>,
    latency_ms: Option<Latency>,
    max_abs_diff: Option<f64>,
    max_rel_diff: Option<f64>,
}

#[derive(Serialize, Clone, Copy)]
struct Latency {
    p50: f64,
    min: f64,
    mean: f64,
}

/// All rows of one model (a group of twin files).
#[derive(Serialize)]
struct Report {
    model: String,
    inputs: String,
    reference: String,
    results: Vec<Row>,
}

fn latency(samples: &mut [f64]) -> Option<Latency> {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    Some(Latency { p50: percentile(samples, 50.0)?, min: *samples.first()?, mean })
}

fn compare_group(args: &CompareArgs, key: &str, files: &[PathBuf]) -> Result<Report> {
    let dir = files[0].parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut inputs: Option<Vec<(Option<String>, Tensor)>> = None;
    let mut reference: Option<Vec<(Option<String>, Tensor)>> = None;
    let (mut input_note, mut reference_note) = (String::new(), String::new());
    if !args.inputs.is_empty() {
        inputs = Some(inputs::read_args(&args.inputs)?);
        input_note = "given .npy files".into();
    } else {
        let case_dir = inputs::case_dir(&dir, args.case.as_deref())?;
        if let Some(case_dir) = case_dir {
            let case = inputs::read_case(&case_dir)?;
            input_note = format!("case {}", case_dir.display());
            inputs = Some(case.inputs.into_iter().map(|(n, t)| (Some(n), t)).collect());
            if !case.outputs.is_empty() && args.references.is_empty() {
                reference_note = format!("PyTorch eager outputs in {}", case_dir.display());
                reference = Some(case.outputs.into_iter().map(|(n, t)| (Some(n), t)).collect());
            }
        }
    }
    if !args.references.is_empty() {
        reference = Some(inputs::read_args(&args.references)?);
        reference_note = "given .npy files".into();
    }

    let mut rows = Vec::new();
    for file in files {
        let candidates =
            crate::models::candidates(file, files, &args.backends, &args.load.options(&Backend::AUTO)?)?;
        for backend in candidates {
            let mut row = Row {
                file: file.clone(),
                backend: backend.to_string(),
                status: Status::Ok,
                error: None,
                load_ms: None,
                latency_ms: None,
                max_abs_diff: None,
                max_rel_diff: None,
            };
            let started = Instant::now();
            let loaded = args.load.options(&backend).and_then(|o| rivet::load(file, &o));
            let model = match loaded {
                Ok(m) => m,
                Err(e) => {
                    row.status = if e.kind() == ErrorKind::Unsupported {
                        Status::Unsupported
                    } else {
                        Status::LoadError
                    };
                    row.error = Some(e.to_string());
                    rows.push(row);
                    continue;
                }
            };
            row.load_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            let feed = match &inputs {
                Some(i) => i.clone(),
                None => {
                    let generated = inputs::generate(model.signature(), 0, None)?;
                    input_note = "generated from the signature (seed 0, dynamic dims = 1)".into();
                    let generated: Vec<_> = generated.into_iter().map(|(n, t)| (Some(n), t)).collect();
                    inputs = Some(generated.clone());
                    generated
                }
            };
            let outcome = (|| -> Result<(Outputs, Vec<f64>)> {
                let first = run_model(&*model, &feed)?;
                for _ in 0..args.warmup {
                    run_model(&*model, &feed)?;
                }
                let mut samples = Vec::with_capacity(args.iterations);
                for _ in 0..args.iterations {
                    let t = Instant::now();
                    run_model(&*model, &feed)?;
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok((first, samples))
            })();
            let (outputs, mut samples) = match outcome {
                Ok(o) => o,
                Err(e) => {
                    row.status = Status::RunError;
                    row.error = Some(e.to_string());
                    rows.push(row);
                    continue;
                }
            };
            row.latency_ms = latency(&mut samples);
            if reference.is_none() {
                // The first backend that runs becomes the reference: its own row says so rather
                // than showing a zero difference with itself.
                reference_note = format!("{backend} on {} (no PyTorch reference given)", file.display());
                reference = Some(outputs.iter().map(|(n, t)| (Some(n.to_owned()), t.clone())).collect());
                row.status = Status::Reference;
                rows.push(row);
                continue;
            }
            let named: Vec<(String, Tensor)> =
                outputs.iter().map(|(n, t)| (n.to_owned(), t.clone())).collect();
            match inputs::diff(&named, reference.as_deref().unwrap_or_default(), args.atol, args.rtol) {
                Ok((abs, rel, close)) => {
                    row.max_abs_diff = Some(abs);
                    row.max_rel_diff = Some(rel);
                    if !close {
                        row.status = Status::Mismatch;
                    }
                }
                Err(e) => {
                    row.status = Status::Mismatch;
                    row.error = Some(e.to_string());
                }
            }
            rows.push(row);
        }
    }
    // A backend that is its own reference, with no other row to compare, checked nothing.
    if rows.iter().filter(|r| r.latency_ms.is_some()).count() == 1 {
        for row in rows.iter_mut().filter(|r| r.status == Status::Reference) {
            row.status = Status::NoReference;
        }
        reference_note = "none (one backend ran and no PyTorch reference was given)".into();
    }
    let model = Path::new(key).file_name().map_or(key.to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(Report { model, inputs: input_note, reference: reference_note, results: rows })
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn sci(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2e}"))
}

fn print_table(reports: &[Report]) {
    for report in reports {
        println!("model {}: inputs: {}; reference: {}", report.model, report.inputs, report.reference);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "model",
        "file",
        "backend",
        "load ms",
        "p50 ms",
        "min ms",
        "max abs diff",
        "max rel diff",
        "result",
    ]);
    let mut notes = Vec::new();
    for report in reports {
        for row in &report.results {
            let file = row.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let result = match &row.error {
                Some(e) => {
                    notes.push(e.clone());
                    format!("{} [{}]", row.status.as_str(), notes.len())
                }
                None => row.status.as_str().to_owned(),
            };
            table.add_row([
                report.model.clone(),
                file,
                row.backend.to_owned(),
                ms(row.load_ms),
                ms(row.latency_ms.map(|l| l.p50)),
                ms(row.latency_ms.map(|l| l.min)),
                sci(row.max_abs_diff),
                sci(row.max_rel_diff),
                result,
            ]);
        }
    }
    println!("{table}");
    for (i, note) in notes.iter().enumerate() {
        println!("[{}] {note}", i + 1);
    }
}

/// Runs `rivet compare`. Fails when an output differs beyond tolerance, a run fails, or no
/// backend loads a model.
pub fn compare(args: &CompareArgs) -> Result<ExitCode> {
    let mut reports = Vec::new();
    for (key, files) in crate::models::model_groups(&args.models)? {
        reports.push(compare_group(args, &key, &files)?);
    }
    if args.json {
        let value = serde_json::json!({
            "atol": args.atol, "rtol": args.rtol, "iterations": args.iterations, "models": reports,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print_table(&reports);
    }
    let mut problems = Vec::new();
    for report in &reports {
        for row in report.results.iter().filter(|r| r.status.is_failure()) {
            problems.push(format!("{} on {}: {}", row.backend, row.file.display(), row.status.as_str()));
        }
        if !report.results.iter().any(|r| r.latency_ms.is_some()) {
            problems.push(format!("{}: no backend ran it", report.model));
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", problems.join("; "));
        Ok(ExitCode::FAILURE)
    }
}
