//! The child process that measures one backend at one batch size and concurrency, so its peak
//! memory is its own and a crash in a backend cannot take the whole benchmark down.
//!
//! The parent runs `rivet bench-worker`, writes a [`Job`] as JSON to its stdin and reads one
//! [`JobResult`] as JSON from its stdout.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use rivet::{Backend, Device, Error, ErrorKind, LoadOptions, Model, Result, Signature, Tensor};
use serde::{Deserialize, Serialize};

use super::runner::{self, Plan};
use super::stats::{self, Summary};
use crate::inputs;

/// Where a job's inputs come from. Every child builds them the same way, so every backend sees
/// the same tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSource {
    /// `.npy` files, each with the input name it was given (if any).
    Files(Vec<(Option<String>, PathBuf)>),
    /// A case folder's `input.NAME.npy` files.
    Case(PathBuf),
    /// Generated from the signature with this seed.
    Generate(u64),
}

/// One measurement to make.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The model file.
    pub file: PathBuf,
    /// The backend's name.
    pub backend: String,
    /// Rows along the inputs' leading dimension.
    pub batch: usize,
    /// Untimed runs before measuring.
    pub warmup: usize,
    /// Clients, rate and stop rule.
    pub plan: Plan,
    /// Device name (cpu, cuda:N).
    pub device: String,
    /// Intra-op threads (every backend; the parent also sets RAYON_NUM_THREADS, which sizes
    /// how Candle splits its matrix products).
    pub threads: Option<usize>,
    /// Backend options by backend (`ort.instances`, `tch.spec`...).
    pub options: BTreeMap<Backend, BTreeMap<String, String>>,
    /// The inputs.
    pub source: InputSource,
    /// Where to write the first run's outputs (`NAME.npy`) for the parity check.
    pub outputs_dir: PathBuf,
    /// Also write the inputs fed (`input.NAME.npy`) here, when set.
    pub save_inputs: Option<PathBuf>,
    /// Shadow the model with the same file on this backend (`rivet::Shadow`, default options).
    #[serde(default)]
    pub shadow: Option<String>,
}

/// What a job measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobResult {
    /// Loading the model, in milliseconds.
    pub load_ms: Option<f64>,
    /// The first run after loading, in milliseconds.
    pub first_inference_ms: Option<f64>,
    /// Latency over the counted requests.
    pub latency_ms: Option<Summary>,
    /// Counted requests per second.
    pub inferences_per_s: Option<f64>,
    /// Seconds the counted requests cover.
    pub measured_s: Option<f64>,
    /// Whether the stability rule was met (`None` without it).
    pub stable: Option<bool>,
    /// Measurement windows used by the stability rule.
    pub windows: usize,
    /// Peak resident memory of the child, in MiB (Linux's VmHWM).
    pub peak_rss_mib: Option<f64>,
    /// Output names, in order, written to the job's `outputs_dir`.
    pub outputs: Vec<String>,
    /// The error that stopped the job: its kind ("Unsupported", "InvalidInput", ...) and text.
    pub error: Option<(String, String)>,
    /// Where it stopped: "load", "inputs" or "run".
    pub stage: Option<String>,
    /// With a shadow: what it compared, matched and dropped over the job.
    pub shadow: Option<rivet::shadow::ShadowStats>,
}

/// Entry point of `rivet bench-worker`: one job from stdin, one result on stdout.
pub fn main() -> ExitCode {
    let mut text = String::new();
    let job: Job =
        match std::io::stdin().read_to_string(&mut text).map_err(|e| e.to_string()).and_then(|_| {
            serde_json::from_str(&text).map_err(|e| format!("bench-worker: not a job description: {e}"))
        }) {
            Ok(job) => job,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = run_job(&job);
    match serde_json::to_string(&result) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bench-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_job(job: &Job) -> JobResult {
    let mut result = JobResult::default();
    let mut stage = "load";
    let outcome = (|| -> Result<()> {
        let backend: Backend = job.backend.parse()?;
        let device: Device = job.device.parse().map_err(|e: String| Error::invalid_input("device", e))?;
        let options = LoadOptions {
            intra_op_threads: job.threads,
            backend,
            device,
            backend_options: job.options.clone(),
            ..LoadOptions::default()
        };
        let started = Instant::now();
        let mut model = rivet::load(&job.file, &options)?;
        result.load_ms = Some(ms(started));
        let mut shadow = None;
        if let Some(name) = &job.shadow {
            let options = LoadOptions { backend: name.parse()?, ..options.clone() };
            let candidate = rivet::load(&job.file, &options)?;
            let wrapped = Arc::new(rivet::Shadow::new(model, candidate, rivet::ShadowOptions::default())?);
            shadow = Some(Arc::clone(&wrapped));
            model = wrapped;
        }

        stage = "inputs";
        let feed = job_inputs(job, model.signature())?;
        if let Some(dir) = &job.save_inputs {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
            for (i, (name, tensor)) in feed.iter().enumerate() {
                let name = name.clone().unwrap_or_else(|| format!("{i}"));
                let file = dir.join(format!("input.{}.npy", crate::output_file_name(&name)));
                rivet::npy::write_npy(&file, tensor)?;
            }
        }

        stage = "run";
        let started = Instant::now();
        let first = crate::run_model(&*model, &feed)?;
        result.first_inference_ms = Some(ms(started));
        std::fs::create_dir_all(&job.outputs_dir).map_err(|e| Error::file(&job.outputs_dir, e))?;
        for (i, (name, tensor)) in first.iter().enumerate() {
            rivet::npy::write_npy(&job.outputs_dir.join(format!("{i}.npy")), tensor)?;
            result.outputs.push(name.to_owned());
        }
        drop(first);
        for _ in 0..job.warmup {
            crate::run_model(&*model, &feed)?;
        }
        measure(job, &*model, &feed, &mut result)?;
        if let Some(shadow) = shadow {
            shadow.flush();
            result.shadow = Some(shadow.stats());
        }
        Ok(())
    })();
    if let Err(err) = outcome {
        result.error = Some((format!("{:?}", err.kind()), err.to_string()));
        result.stage = Some(stage.to_owned());
    }
    result.peak_rss_mib = peak_rss_mib();
    result
}

fn measure(
    job: &Job,
    model: &dyn Model,
    feed: &[(Option<String>, Tensor)],
    result: &mut JobResult,
) -> Result<()> {
    let request = || crate::run_model(model, feed).map(drop);
    let m = runner::measure(&job.plan, &request)?;
    let latencies: Vec<f64> = m.samples.iter().map(stats::Sample::latency).collect();
    let summary = stats::summarize(&latencies).ok_or_else(|| {
        Error::backend(
            &job.backend,
            "no request completed inside the counted measurement windows: one run takes longer than \
             a window; use a larger --window-ms, or --duration / --iterations",
        )
    })?;
    result.latency_ms = Some(summary);
    result.inferences_per_s = (m.elapsed_s > 0.0).then(|| m.samples.len() as f64 / m.elapsed_s);
    result.measured_s = Some(m.elapsed_s);
    result.stable = m.stable;
    result.windows = m.windows.len();
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The job's inputs at its batch size, named when their source names them.
fn job_inputs(job: &Job, signature: &Signature) -> Result<Vec<(Option<String>, Tensor)>> {
    let base: Vec<(Option<String>, Tensor)> = match &job.source {
        InputSource::Generate(seed) => {
            return Ok(inputs::generate(signature, *seed, Some(job.batch))?
                .into_iter()
                .map(|(n, t)| (Some(n), t))
                .collect())
        }
        InputSource::Case(dir) => {
            inputs::read_case(dir)?.inputs.into_iter().map(|(n, t)| (Some(n), t)).collect()
        }
        InputSource::Files(files) => {
            files.iter().map(|(n, p)| Ok((n.clone(), rivet::npy::read_npy(p)?))).collect::<Result<_>>()?
        }
    };
    base.into_iter()
        .enumerate()
        .map(|(i, (name, tensor))| {
            let spec = match &name {
                Some(n) => signature.inputs.iter().find(|s| &s.name == n),
                None => signature.inputs.get(i),
            };
            let label =
                name.clone().or_else(|| spec.map(|s| s.name.clone())).unwrap_or_else(|| format!("#{i}"));
            if let Some(fixed) =
                spec.and_then(|s| s.shape.as_ref()).and_then(|d| d.first()).and_then(|d| d.fixed())
            {
                if fixed != job.batch {
                    return Err(Error::invalid_input(
                        &label,
                        format!(
                            "leading dimension is fixed at {fixed}; batch {} needs a dynamic batch dimension",
                            job.batch
                        ),
                    ));
                }
            }
            let tensor =
                inputs::with_batch(&tensor, job.batch).map_err(|e| Error::invalid_input(&label, e))?;
            Ok((name, tensor))
        })
        .collect()
}

/// The process's peak resident set in MiB, from /proc/self/status (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Whether an error kind name means "this backend cannot run this model" rather than a failure.
pub fn is_unsupported(kind: &str) -> bool {
    kind == format!("{:?}", ErrorKind::Unsupported)
}

/// Reads the outputs a job wrote, by name.
pub fn read_outputs(dir: &Path, names: &[String]) -> Result<Vec<(String, Tensor)>> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Ok((n.clone(), rivet::npy::read_npy(&dir.join(format!("{i}.npy")))?)))
        .collect()
}
