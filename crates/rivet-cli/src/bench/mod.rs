//! `rivet bench`: latency, throughput, memory and output parity of every backend that loads a
//! model, on the same inputs, at each batch size and concurrency asked for.
//!
//! Each backend × batch × concurrency is measured in its own child process (`rivet
//! bench-worker`), so its peak memory is its own and a backend that crashes costs one row.

mod plot;
mod report;
pub mod runner;
pub mod stats;
pub mod worker;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rivet::{Backend, Error, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::inputs::{self, TensorArg};
use crate::LoadArgs;
use runner::{Plan, Stop};
use worker::{InputSource, Job, JobResult};

/// Arguments of `rivet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model files (.pt, .onnx) or folders holding them; the .pt and .onnx twins of a network
    /// (same folder and name) count as one model.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Backends, comma-separated: all, tch, ort, candle.
    #[arg(long = "backend", short = 'b', value_delimiter = ',', default_value = "all")]
    backends: Vec<String>,
    /// Batch sizes, comma-separated: rows along the inputs' leading dimension.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Client threads sharing one loaded model, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    concurrency: Vec<usize>,
    /// Measure for this many seconds (default: until stable, see --window-ms).
    #[arg(long, conflicts_with = "iterations")]
    duration: Option<f64>,
    /// Measure this many requests in all (default: until stable, see --window-ms).
    #[arg(long)]
    iterations: Option<usize>,
    /// Untimed runs after the first one, before measuring.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Open loop: send this many requests per second in all, and count latency from each
    /// request's scheduled time (a stall shows in every request queued behind it).
    #[arg(long)]
    rate: Option<f64>,
    /// An input: NAME=FILE.npy, or FILE.npy for the next input in signature order. Default: the
    /// model folder's first case (cases/*/input.NAME.npy), else inputs generated from the
    /// signature with --seed. Inputs are resized to each batch by taking their rows in turn.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy")]
    inputs: Vec<TensorArg>,
    /// Which case folder under MODEL_DIR/cases to use (default: the first by name).
    #[arg(long)]
    case: Option<String>,
    /// Seed for generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stability rule: window length in milliseconds.
    #[arg(long, default_value_t = 500)]
    window_ms: u64,
    /// Stability rule: consecutive windows whose throughput and median latency must agree.
    #[arg(long, default_value_t = 3)]
    stable_windows: usize,
    /// Stability rule: how far (percent) each window may lie from their average.
    #[arg(long, default_value_t = 10.0)]
    stability: f64,
    /// Stability rule: give up (and say "unstable") after this many windows.
    #[arg(long, default_value_t = 10)]
    max_windows: usize,
    /// Parity: outputs match when |a - ref| <= atol + rtol * |ref|.
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    /// Parity: relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Write the results as JSON to FILE ("-": standard output, instead of the table).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as a Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Draw latency percentiles and throughput against concurrency to FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Keep the inputs fed at each batch as DIR/MODEL/bBATCH/input.NAME.npy (for other tools,
    /// such as benches/python, to run the very same tensors).
    #[arg(long, value_name = "DIR")]
    save_inputs: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// Output parity of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parity {
    /// What the outputs were compared with.
    pub against: String,
    /// Largest absolute difference (`None` when the outputs could not be compared).
    pub max_abs_diff: Option<f64>,
    /// Largest relative difference (elements with a reference above 1e-6 in magnitude).
    pub max_rel_diff: Option<f64>,
    /// Whether every element is within atol + rtol * |ref|.
    pub within_tolerance: bool,
    /// Why the outputs could not be compared (names or shapes differ).
    pub error: Option<String>,
}

/// One backend × batch × concurrency of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The model (twin files share it).
    pub model: String,
    /// The file the backend loaded.
    pub file: PathBuf,
    /// The backend.
    pub backend: String,
    /// Rows per request.
    pub batch: usize,
    /// Client threads.
    pub concurrency: usize,
    /// Requests per second sent in all (`--rate`), or `None` for a closed loop.
    pub rate: Option<f64>,
    /// "ok", "mismatch", "unsupported", "load_error", "input_error", "run_error" or "crashed".
    pub status: String,
    /// Why, when not "ok".
    pub error: Option<String>,
    /// Loading the model, in milliseconds.
    pub load_ms: Option<f64>,
    /// The first run, in milliseconds.
    pub first_inference_ms: Option<f64>,
    /// Requests counted.
    pub iterations: Option<usize>,
    /// Seconds they cover.
    pub measured_s: Option<f64>,
    /// Whether the stability rule was met (`None` with --iterations or --duration).
    pub stable: Option<bool>,
    /// Windows the stability rule looked at.
    pub windows: usize,
    /// Latency percentiles, mean, min and max, in milliseconds.
    pub latency_ms: Option<stats::Summary>,
    /// Requests per second.
    pub inferences_per_s: Option<f64>,
    /// Rows per second (requests per second × batch).
    pub samples_per_s: Option<f64>,
    /// Peak resident memory of the child process that ran it, in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Output parity.
    pub parity: Option<Parity>,
}

/// Reference outputs for parity: where they came from and the tensors (named when known).
type Reference = (String, Vec<(Option<String>, Tensor)>);

/// Where one model's inputs and reference came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its name.
    pub model: String,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Where the inputs came from.
    pub inputs: String,
    /// What outputs are compared with.
    pub reference: String,
}

/// The whole report, as written by `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Rivet's version.
    pub rivet_version: String,
    /// CPUs the machine offers.
    pub cpus: usize,
    /// The settings used.
    pub settings: serde_json::Value,
    /// One entry per model.
    pub models: Vec<ModelInfo>,
    /// One entry per backend × batch × concurrency of each model.
    pub results: Vec<Row>,
}

/// An error about a command-line option, naming it.
fn arg_error(option: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidInput { input: Some(option.into()), message: format!("{option}: {message}") }
}

fn check_args(args: &BenchArgs) -> Result<()> {
    let bad = |what: &str, message: String| Err(arg_error(what, message));
    if let Some(b) = args.batch.iter().find(|&&b| b == 0) {
        return bad("--batch", format!("expected sizes of 1 or more, got {b}"));
    }
    if let Some(c) = args.concurrency.iter().find(|&&c| c == 0) {
        return bad("--concurrency", format!("expected 1 or more client threads, got {c}"));
    }
    match args.duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            return bad("--duration", format!("expected seconds > 0, got {d}"))
        }
        _ => {}
    }
    if args.iterations == Some(0) {
        return bad("--iterations", "expected 1 or more, got 0".into());
    }
    match args.rate {
        Some(r) if !(r > 0.0 && r.is_finite()) => {
            return bad("--rate", format!("expected requests/s > 0, got {r}"))
        }
        _ => {}
    }
    if args.window_ms == 0 || args.stable_windows == 0 || args.max_windows == 0 {
        return bad("--window-ms/--stable-windows/--max-windows", "expected values of 1 or more".into());
    }
    if !(args.stability >= 0.0 && args.stability.is_finite()) {
        return bad("--stability", format!("expected a percentage >= 0, got {}", args.stability));
    }
    if let Some(plot) = &args.plot {
        plot::check_path(plot)?;
    }
    for name in &args.backends {
        if name != "all" {
            let backend = name.parse::<Backend>().map_err(|e| arg_error("--backend", e))?;
            rivet::backend(&backend).map_err(|e| arg_error("--backend", e))?;
        }
    }
    Ok(())
}

fn plan(args: &BenchArgs, concurrency: usize) -> Plan {
    let stop = match (args.iterations, args.duration) {
        (Some(n), _) => Stop::Iterations(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Stable {
            window_s: args.window_ms as f64 / 1e3,
            windows: args.stable_windows,
            tolerance: args.stability / 100.0,
            max_windows: args.max_windows,
        },
    };
    Plan { concurrency, rate: args.rate, stop }
}

/// A model's input source and the PyTorch reference outputs of its case, if any.
struct Source {
    inputs: InputSource,
    note: String,
    /// The case's outputs (when they have a row per input row) and where they came from.
    case_reference: Option<(Vec<(String, Tensor)>, String)>,
}

fn source(args: &BenchArgs, dir: &Path) -> Result<Source> {
    if !args.inputs.is_empty() {
        let files = args.inputs.iter().map(|a| (a.name.clone(), a.path.clone())).collect();
        return Ok(Source {
            inputs: InputSource::Files(files),
            note: "given .npy files".into(),
            case_reference: None,
        });
    }
    let case_dir = inputs::case_dir(dir, args.case.as_deref())?;
    let Some(case_dir) = case_dir else {
        return Ok(Source {
            inputs: InputSource::Generate(args.seed),
            note: format!("generated from the signature (seed {})", args.seed),
            case_reference: None,
        });
    };
    let case = inputs::read_case(&case_dir)?;
    let rows = case.inputs.first().and_then(|(_, t)| t.shape().first().copied()).unwrap_or(1);
    let same_rows =
        !case.outputs.is_empty() && case.outputs.iter().all(|(_, t)| t.shape().first() == Some(&rows));
    let reference =
        same_rows.then(|| (case.outputs, format!("PyTorch eager outputs of case {}", case_dir.display())));
    Ok(Source {
        inputs: InputSource::Case(case_dir.clone()),
        note: format!("case {}", case_dir.display()),
        case_reference: reference,
    })
}

/// Runs one job in a child process.
fn run_child(job: &Job, threads: Option<usize>) -> std::result::Result<JobResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the rivet executable: {e}"))?;
    let mut command = Command::new(exe);
    command.arg("bench-worker").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(n) = threads {
        command.env("RAYON_NUM_THREADS", n.to_string());
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start a bench worker: {e}"))?;
    let json = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(|e| format!("cannot send the job to its worker: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("bench worker: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match serde_json::from_str::<JobResult>(stdout.trim()) {
        Ok(result) if output.status.success() => Ok(result),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            Err(format!("the worker process {}: {}", output.status, rivet::one_line(last)))
        }
    }
}

/// Runs `rivet bench`. Fails when a run fails, outputs differ beyond tolerance, or no backend
/// runs a model; a backend that does not support a model is reported, not a failure.
pub fn bench(args: &BenchArgs) -> Result<ExitCode> {
    check_args(args)?;
    let wanted: Vec<Backend> = if args.backends.iter().any(|b| b == "all") {
        vec![]
    } else {
        args.backends
            .iter()
            .map(|b| b.parse().map_err(|e: Error| arg_error("--backend", e)))
            .collect::<Result<_>>()?
    };
    let work = tempfile::tempdir().map_err(|e| Error::file(std::env::temp_dir(), e))?;
    let mut models = Vec::new();
    let mut planned = Vec::new();
    for (key, files) in crate::compare::model_groups(&args.models)? {
        let name = Path::new(&key).file_name().map_or(key.clone(), |n| n.to_string_lossy().into_owned());
        let dir = files[0].parent().unwrap_or(Path::new(".")).to_path_buf();
        let src = source(args, &dir)?;
        let mut pairs = Vec::new();
        for file in &files {
            let format = rivet::format::detect_format(file, "auto")?;
            for backend in rivet::backends_for(format, &args.load.options(&Backend::AUTO)?) {
                if wanted.is_empty() || wanted.contains(&backend) {
                    pairs.push((file.clone(), backend));
                }
            }
        }
        for &batch in &args.batch {
            for (file, backend) in &pairs {
                for &concurrency in &args.concurrency {
                    planned.push((models.len(), batch, file.clone(), backend.clone(), concurrency));
                }
            }
        }
        let reference =
            src.case_reference.as_ref().map_or("the first backend that runs it".into(), |r| r.1.clone());
        models.push((ModelInfo { model: name, files, inputs: src.note.clone(), reference }, src));
    }

    let progress = ProgressBar::new(planned.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut first_outputs: HashMap<(usize, usize), Reference> = HashMap::new();
    let mut unsupported: Vec<(PathBuf, Backend)> = Vec::new();
    for (index, (model, batch, file, backend, concurrency)) in planned.into_iter().enumerate() {
        let (info, src) = &models[model];
        if unsupported.contains(&(file.clone(), backend.clone())) {
            // Said once per model and backend: other batches and concurrencies cannot change it.
            progress.inc(1);
            continue;
        }
        progress.set_message(format!("{} {backend} batch {batch} concurrency {concurrency}", info.model));
        let job = Job {
            file: file.clone(),
            backend: backend.name().to_owned(),
            batch,
            warmup: args.warmup,
            plan: plan(args, concurrency),
            device: args.load.device.to_string(),
            threads: args.load.threads,
            options: {
                let mut options = args.load.options(&backend)?;
                if backend == Backend::ORT {
                    let instances = args.load.instances.unwrap_or(1).max(concurrency);
                    options.set_option(&Backend::ORT, "instances", instances.to_string());
                }
                options.backend_options
            },
            source: src.inputs.clone(),
            outputs_dir: work.path().join(format!("job{index}")),
            save_inputs: args.save_inputs.as_ref().map(|d| d.join(&info.model).join(format!("b{batch}"))),
        };
        let mut row = Row {
            model: info.model.clone(),
            file,
            backend: backend.name().to_owned(),
            batch,
            concurrency,
            rate: args.rate,
            status: "ok".into(),
            error: None,
            load_ms: None,
            first_inference_ms: None,
            iterations: None,
            measured_s: None,
            stable: None,
            windows: 0,
            latency_ms: None,
            inferences_per_s: None,
            samples_per_s: None,
            peak_rss_mib: None,
            parity: None,
        };
        match run_child(&job, args.load.threads) {
            Err(e) => {
                row.status = "crashed".into();
                row.error = Some(e);
            }
            Ok(result) => {
                row.load_ms = result.load_ms;
                row.first_inference_ms = result.first_inference_ms;
                row.iterations = result.latency_ms.map(|l| l.count);
                row.measured_s = result.measured_s;
                row.stable = result.stable;
                row.windows = result.windows;
                row.latency_ms = result.latency_ms;
                row.inferences_per_s = result.inferences_per_s;
                row.samples_per_s = result.inferences_per_s.map(|r| r * batch as f64);
                row.peak_rss_mib = result.peak_rss_mib;
                if !result.outputs.is_empty() {
                    row.parity = parity(args, src, &mut first_outputs, (model, batch), &row, &job, &result);
                }
                if let Some((kind, message)) = result.error {
                    row.status = match result.stage.as_deref() {
                        Some("load") if worker::is_unsupported(&kind) => "unsupported",
                        Some("load") => "load_error",
                        Some("inputs") => "input_error",
                        _ => "run_error",
                    }
                    .into();
                    if row.status == "unsupported" {
                        unsupported.push((row.file.clone(), backend.clone()));
                    }
                    row.error = Some(message);
                } else if row.parity.as_ref().is_some_and(|p| !p.within_tolerance) {
                    row.status = "mismatch".into();
                }
            }
        }
        rows.push(row);
        progress.inc(1);
    }
    progress.finish_and_clear();

    let report = Report {
        rivet_version: env!("CARGO_PKG_VERSION").into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings: serde_json::json!({
            "batch": args.batch, "concurrency": args.concurrency, "warmup": args.warmup,
            "iterations": args.iterations, "duration_s": args.duration, "rate": args.rate,
            "threads": args.load.threads, "device": args.load.device.to_string(),
            "stop": plan(args, 1).stop, "atol": args.atol, "rtol": args.rtol,
        }),
        models: models.into_iter().map(|(info, _)| info).collect(),
        results: rows,
    };
    report::write(args, &report)?;
    Ok(report::verdict(&report))
}

/// Compares a job's outputs with the case's PyTorch outputs (resized to the batch) or, without
/// a case, with the first backend that ran the model at this batch.
fn parity(
    args: &BenchArgs,
    src: &Source,
    first_outputs: &mut HashMap<(usize, usize), Reference>,
    key: (usize, usize),
    row: &Row,
    job: &Job,
    result: &JobResult,
) -> Option<Parity> {
    let outputs = worker::read_outputs(&job.outputs_dir, &result.outputs).ok()?;
    let (against, reference) = match &src.case_reference {
        Some((case_outputs, note)) => {
            let resized: Option<Vec<_>> = case_outputs
                .iter()
                .map(|(n, t)| inputs::with_batch(t, row.batch).ok().map(|t| (Some(n.clone()), t)))
                .collect();
            (note.clone(), resized?)
        }
        None => first_outputs
            .entry(key)
            .or_insert_with(|| {
                (
                    format!("{} on {}", row.backend, row.file.display()),
                    outputs.iter().map(|(n, t)| (Some(n.clone()), t.clone())).collect(),
                )
            })
            .clone(),
    };
    let parity = match inputs::diff(&outputs, &reference, args.atol, args.rtol) {
        Ok((abs, rel, close)) => Parity {
            against,
            max_abs_diff: Some(abs),
            max_rel_diff: Some(rel),
            within_tolerance: close,
            error: None,
        },
        Err(e) => Parity {
            against,
            max_abs_diff: None,
            max_rel_diff: None,
            within_tolerance: false,
            error: Some(e),
        },
    };
    Some(parity)
}
