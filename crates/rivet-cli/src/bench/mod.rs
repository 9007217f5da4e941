//! `rivet bench`: latency, throughput, memory and output parity of every backend that loads a
//! model, on the same inputs, at each batch size and concurrency asked for.
//!
//! Each backend × batch × concurrency is measured in its own child process (`rivet
//! bench-worker`), so its peak memory is its own and a backend that crashes costs one row.

mod args;
mod child;
mod parity;
pub(crate) mod plot;
mod report;
mod rows;
pub mod runner;
pub mod stats;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use rivet::{Backend, Error, Result, Tensor};

use crate::inputs;
pub use args::BenchArgs;
use args::{arg_error, check_args, plan};
use child::run_child;
use parity::parity;
pub use rows::RowStatus;
use rows::{ModelInfo, Reference, Report, Row};
use worker::{InputSource, Job};

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
    for (key, files) in crate::models::model_groups(&args.models)? {
        let name = Path::new(&key).file_name().map_or(key.clone(), |n| n.to_string_lossy().into_owned());
        let dir = files[0].parent().unwrap_or(Path::new(".")).to_path_buf();
        let src = source(args, &dir)?;
        let mut pairs = Vec::new();
        for file in &files {
            for backend in
                crate::models::candidates(file, &files, &wanted, &args.load.options(&Backend::AUTO)?)?
            {
                pairs.push((file.clone(), backend));
            }
        }
        let shadows: Vec<Option<&str>> =
            std::iter::once(None).chain(args.shadow.as_deref().map(Some)).collect();
        for &batch in &args.batch {
            for (file, backend) in &pairs {
                for &shadow in &shadows {
                    for &concurrency in &args.concurrency {
                        planned.push((
                            models.len(),
                            batch,
                            file.clone(),
                            backend.clone(),
                            shadow,
                            concurrency,
                        ));
                    }
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
    for (index, (model, batch, file, backend, shadow, concurrency)) in planned.into_iter().enumerate() {
        let (info, src) = &models[model];
        if unsupported.contains(&(file.clone(), backend.clone())) {
            // Said once per model and backend: other batches and concurrencies cannot change it.
            progress.inc(1);
            continue;
        }
        let label = match shadow {
            Some(s) => format!("{}+shadow:{s}", backend.name()),
            None => backend.name().to_owned(),
        };
        progress.set_message(format!("{} {label} batch {batch} concurrency {concurrency}", info.model));
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
            shadow: shadow.map(str::to_owned),
        };
        let mut row = Row {
            model: info.model.clone(),
            file,
            backend: label,
            batch,
            concurrency,
            rate: args.rate,
            status: RowStatus::Ok,
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
            shadow: None,
        };
        match run_child(&job, args.load.threads) {
            Err(e) => {
                row.status = RowStatus::Crashed;
                row.error = Some(e.to_string());
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
                row.shadow = result.shadow.clone();
                let mut is_reference = false;
                if !result.outputs.is_empty() {
                    let found = parity(args, src, &mut first_outputs, (model, batch), &row, &job, &result);
                    (row.parity, is_reference) = found.map_or((None, false), |(p, r)| (Some(p), r));
                }
                if let Some((kind, message)) = result.error {
                    row.status = match result.stage.as_deref() {
                        Some("load") if worker::is_unsupported(&kind) => RowStatus::Unsupported,
                        Some("load") => RowStatus::LoadError,
                        Some("inputs") => RowStatus::InputError,
                        _ => RowStatus::RunError,
                    };
                    if row.status == RowStatus::Unsupported {
                        unsupported.push((row.file.clone(), backend.clone()));
                    }
                    row.error = Some(message);
                } else if is_reference {
                    row.status = RowStatus::Reference;
                } else if row.parity.as_ref().is_some_and(|p| !p.within_tolerance) {
                    row.status = RowStatus::Mismatch;
                }
            }
        }
        rows.push(row);
        progress.inc(1);
    }
    progress.finish_and_clear();
    // A reference that no other backend was compared with checked nothing: say so.
    for i in 0..rows.len() {
        if rows[i].status != RowStatus::Reference {
            continue;
        }
        let (model, batch) = (&rows[i].model, rows[i].batch);
        let compared = rows.iter().any(|r| {
            r.model == *model && r.batch == batch && matches!(r.status, RowStatus::Ok | RowStatus::Mismatch)
        });
        if !compared {
            rows[i].status = RowStatus::NoReference;
            if let Some(p) = rows[i].parity.as_mut() {
                p.against =
                    "nothing: no other backend ran it at this batch and no PyTorch case exists".into();
            }
        }
    }

    let report = Report {
        rivet_version: env!("CARGO_PKG_VERSION").into(),
        build: rows::BUILD.into(),
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
