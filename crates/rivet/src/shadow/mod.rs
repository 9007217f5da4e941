//! Shadow mode: a candidate model runs beside the model it would replace, on the same inputs,
//! and every disagreement is counted and can be captured, while callers get the primary's
//! answers only.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rivet::shadow::{Shadow, ShadowOptions};
//! # fn main() -> rivet::Result<()> {
//! let primary = rivet::load("models/mlp/mlp.onnx", &rivet::LoadOptions::with_backend("ort".parse()?))?;
//! let candidate = rivet::load("models/mlp/mlp.pt", &rivet::LoadOptions::default())?;
//! let shadow = Arc::new(Shadow::new(primary, candidate, ShadowOptions::default())?);
//! // `shadow` is a model: run it wherever the primary ran. Later:
//! let stats = shadow.stats();
//! println!("{} compared, {} diverged", stats.compared, stats.diverged);
//! # Ok(())
//! # }
//! ```
//!
//! The primary runs on the caller's thread and its outputs are returned as they are. The inputs
//! (copied) and the primary's outputs (shared, not copied) then go through a bounded queue to a
//! worker thread of the shadow's own, which runs the candidate and compares. The primary never
//! waits for the candidate: when the queue is full the comparison is dropped and counted. A
//! candidate's error or panic is counted and never reaches the caller.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rivet_core::panics::{catch_quietly, panic_text};
use rivet_core::{Backend, Error, Model, Result, Signature, Tensor, TensorView};

mod capture;
mod compare;

use capture::Captures;
pub use capture::{CaptureOptions, CaptureRecord};
use compare::compare_all;
pub use compare::{compare, OutputComparison};

/// How a shadow samples, compares and captures.
#[derive(Debug, Clone)]
pub struct ShadowOptions {
    /// Absolute tolerance: an element matches when `|candidate − primary| ≤ atol + rtol·|primary|`.
    pub atol: f64,
    /// Relative tolerance (see `atol`).
    pub rtol: f64,
    /// The share of requests compared, from 0 to 1, spread evenly (0.25: every fourth).
    pub sample: f64,
    /// Requests that may wait for the candidate; beyond it comparisons are dropped.
    pub queue: usize,
    /// Where divergent requests are captured, if anywhere.
    pub capture: Option<CaptureOptions>,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        ShadowOptions { atol: 1e-5, rtol: 1e-5, sample: 1.0, queue: 64, capture: None }
    }
}

/// Latency percentiles, in milliseconds, over the most recent runs (up to 4,096).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Runs measured (all of them, not only the recent ones).
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// What a shadow has done so far. A capture directory holds the latest as `stats.json`, written
/// after each capture and when the shadow is dropped.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShadowStats {
    /// Requests the primary answered.
    pub requests: u64,
    /// Requests left out by sampling.
    pub skipped: u64,
    /// Comparisons dropped because the queue was full.
    pub dropped: u64,
    /// Requests the candidate ran and that were compared.
    pub compared: u64,
    /// Compared requests whose every output matched.
    pub matched: u64,
    /// Compared requests with at least one output outside the tolerance.
    pub diverged: u64,
    /// Requests on which the candidate failed or panicked.
    pub candidate_errors: u64,
    /// The last candidate failure's message.
    pub last_candidate_error: Option<String>,
    /// Divergent requests written to the capture directory.
    pub captured: u64,
    /// Captures that could not be written, and why the last one failed.
    pub capture_errors: u64,
    /// The last capture failure's message.
    pub last_capture_error: Option<String>,
    /// The primary's run time.
    pub primary_latency: Latency,
    /// The candidate's run time.
    pub candidate_latency: Latency,
}

/// A primary model shadowed by a candidate: itself a [`Model`] answering with the primary.
pub struct Shadow {
    primary: Arc<dyn Model>,
    candidate_backend: Backend,
    sample: f64,
    sender: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// One request on its way to the candidate.
struct Job {
    inputs: Vec<Tensor>,
    primary: Vec<Tensor>,
}

/// What the callers and the worker share.
struct Shared {
    requests: AtomicU64,
    skipped: AtomicU64,
    dropped: AtomicU64,
    state: Mutex<State>,
    /// Signalled when the worker finishes a job.
    idle: Condvar,
}

impl Shared {
    /// The counts and latencies now.
    fn snapshot(&self) -> ShadowStats {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = state.stats.clone();
        stats.requests = self.requests.load(Ordering::Relaxed);
        stats.skipped = self.skipped.load(Ordering::Relaxed);
        stats.dropped = self.dropped.load(Ordering::Relaxed);
        stats.primary_latency = percentiles(&state.primary_times, stats.requests);
        stats.candidate_latency =
            percentiles(&state.candidate_times, stats.compared + stats.candidate_errors);
        stats
    }
}

/// What the worker updates under the lock.
#[derive(Default)]
struct State {
    pending: u64,
    stats: ShadowStats,
    primary_times: VecDeque<f64>,
    candidate_times: VecDeque<f64>,
}

const LATENCY_WINDOW: usize = 4096;

fn push_time(times: &mut VecDeque<f64>, ms: f64) {
    if times.len() == LATENCY_WINDOW {
        times.pop_front();
    }
    times.push_back(ms);
}

fn percentiles(times: &VecDeque<f64>, count: u64) -> Latency {
    if times.is_empty() {
        return Latency { count, ..Latency::default() };
    }
    let mut sorted: Vec<f64> = times.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Latency { count, p50_ms: at(0.5), p90_ms: at(0.9), p99_ms: at(0.99) }
}

/// Checks that `candidate` can stand in for `primary`: the same inputs (names, order, dtypes,
/// ranks where both say) and the same outputs (count and names where both declare them, dtypes).
fn check_signatures(primary: &Signature, candidate: &Signature) -> Result<()> {
    let fail = |what: String| {
        Err(Error::InvalidInput { input: None, message: format!("shadow: the candidate {what}") })
    };
    let names = |specs: &[rivet_core::TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(&primary.inputs) != names(&candidate.inputs) {
        return fail(format!(
            "takes inputs {:?} where the primary takes {:?}",
            names(&candidate.inputs),
            names(&primary.inputs)
        ));
    }
    for (p, c) in primary.inputs.iter().zip(&candidate.inputs) {
        if let (Some(pd), Some(cd)) = (p.dtype, c.dtype) {
            if pd != cd {
                return fail(format!("takes input \"{}\" as {cd} where the primary takes {pd}", p.name));
            }
        }
        if let (Some(ps), Some(cs)) = (&p.shape, &c.shape) {
            if ps.len() != cs.len() {
                return fail(format!(
                    "takes input \"{}\" of rank {} where the primary takes rank {}",
                    p.name,
                    cs.len(),
                    ps.len()
                ));
            }
        }
    }
    if !primary.outputs.is_empty() && !candidate.outputs.is_empty() {
        if names(&primary.outputs) != names(&candidate.outputs) {
            return fail(format!(
                "returns outputs {:?} where the primary returns {:?}",
                names(&candidate.outputs),
                names(&primary.outputs)
            ));
        }
        for (p, c) in primary.outputs.iter().zip(&candidate.outputs) {
            if let (Some(pd), Some(cd)) = (p.dtype, c.dtype) {
                if pd != cd {
                    return fail(format!(
                        "returns output \"{}\" as {cd} where the primary returns {pd}",
                        p.name
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Shadow {
    /// Shadows `primary` with `candidate`. Fails when their signatures differ, an option is
    /// out of range, or the capture directory cannot be made.
    pub fn new(primary: Arc<dyn Model>, candidate: Arc<dyn Model>, options: ShadowOptions) -> Result<Shadow> {
        check_signatures(primary.signature(), candidate.signature())?;
        let bad =
            |key: &str, message: String| Error::InvalidOption { backend: None, key: key.into(), message };
        if !(0.0..=1.0).contains(&options.sample) {
            return Err(bad("sample", format!("{} is not between 0 and 1", options.sample)));
        }
        if options.queue == 0 {
            return Err(bad("queue", "must hold at least 1 request".into()));
        }
        if !(options.atol >= 0.0 && options.rtol >= 0.0) {
            return Err(bad("atol", "atol and rtol must be 0 or more".into()));
        }
        let captures = match &options.capture {
            Some(c) => Some(Captures::open(c)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            requests: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
        });
        let (sender, receiver) = sync_channel(options.queue);
        let worker = {
            let shared = shared.clone();
            let candidate = candidate.clone();
            let names = primary.output_names(primary.signature().outputs.len().max(1));
            let (atol, rtol) = (options.atol, options.rtol);
            std::thread::Builder::new()
                .name("rivet-shadow".into())
                .spawn(move || work(receiver, candidate, shared, captures, atol, rtol, names))
                .map_err(|e| Error::backend("shadow", format!("cannot start the shadow's thread: {e}")))?
        };
        Ok(Shadow {
            primary,
            candidate_backend: candidate.backend(),
            sample: options.sample,
            sender: Some(sender),
            worker: Some(worker),
            shared,
        })
    }

    /// The counts and latencies so far.
    pub fn stats(&self) -> ShadowStats {
        self.shared.snapshot()
    }

    /// Waits until every queued comparison is done.
    pub fn flush(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.pending > 0 {
            state = self.shared.idle.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The candidate's backend.
    pub fn candidate_backend(&self) -> &Backend {
        &self.candidate_backend
    }

    /// Whether request number `n` (from 0) is compared: `sample` of them, evenly spread.
    fn sampled(&self, n: u64) -> bool {
        self.sample >= 1.0 || ((n + 1) as f64 * self.sample).floor() > (n as f64 * self.sample).floor()
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Model for Shadow {
    fn signature(&self) -> &Signature {
        self.primary.signature()
    }

    fn backend(&self) -> Backend {
        self.primary.backend()
    }

    fn output_names(&self, count: usize) -> Arc<[String]> {
        self.primary.output_names(count)
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let outputs = self.primary.execute(inputs)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            push_time(&mut state.primary_times, ms);
        }
        if !self.sampled(n) {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(outputs);
        }
        let job =
            Job { inputs: inputs.iter().map(TensorView::to_tensor).collect(), primary: outputs.clone() };
        if let Some(sender) = &self.sender {
            self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).pending += 1;
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(job) {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).pending -= 1;
                self.shared.idle.notify_all();
            }
        }
        Ok(outputs)
    }
}

/// The worker: runs the candidate on each job, compares, records, captures.
fn work(
    receiver: Receiver<Job>,
    candidate: Arc<dyn Model>,
    shared: Arc<Shared>,
    mut captures: Option<Captures>,
    atol: f64,
    rtol: f64,
    names: Arc<[String]>,
) {
    for job in receiver {
        let views: Vec<TensorView<'_>> = job.inputs.iter().map(Tensor::view).collect();
        let started = Instant::now();
        let result = catch_quietly(|| candidate.execute(&views));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let outcome = match result {
            Ok(Ok(outputs)) => {
                Ok(compare_all(&job.primary, &outputs, &names, atol, rtol).map(|c| (c, outputs)))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(format!("the candidate panicked: {}", panic_text(&*payload))),
        };
        let mut capture = None;
        {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            push_time(&mut state.candidate_times, ms);
            match outcome {
                Err(message) | Ok(Err(message)) => {
                    state.stats.candidate_errors += 1;
                    state.stats.last_candidate_error = Some(message);
                }
                Ok(Ok((comparisons, outputs))) => {
                    state.stats.compared += 1;
                    if comparisons.iter().any(OutputComparison::diverged) {
                        state.stats.diverged += 1;
                        capture = Some((comparisons, outputs));
                    } else {
                        state.stats.matched += 1;
                    }
                }
            }
        }
        if let (Some(captures), Some((comparisons, outputs))) = (captures.as_mut(), capture) {
            let written = captures.write(&job, &outputs, &names, &comparisons);
            {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                match written {
                    Ok(()) => state.stats.captured += 1,
                    Err(e) => {
                        state.stats.capture_errors += 1;
                        state.stats.last_capture_error = Some(e.to_string());
                    }
                }
            }
            captures.write_stats(&shared.snapshot());
        }
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending -= 1;
        drop(state);
        shared.idle.notify_all();
    }
    // The shadow is gone: the capture directory keeps its final counts.
    if let Some(captures) = captures.as_ref() {
        captures.write_stats(&shared.snapshot());
    }
}
