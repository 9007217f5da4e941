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
//! candidate's error or panic is counted and never reaches the caller. The worker runs at the
//! lowest scheduling priority, so that where cores are scarce the candidate gets what the
//! primary leaves.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rivet_core::panics::{catch_quietly, panic_text};
use rivet_core::{Backend, Error, Model, Result, Signature, Tensor, TensorView};

mod capture;
mod compare;
mod recorder;

pub use capture::{CaptureOptions, CaptureRecord};
pub use compare::{compare, OutputComparison};
pub use recorder::{Admission, Outcome, Recorder, Ticket};

/// How a shadow samples, compares and captures.
#[derive(Debug, Clone)]
pub struct ShadowOptions {
    /// Absolute tolerance: an element matches when `|candidate − primary| ≤ atol + rtol·|primary|`.
    pub atol: f64,
    /// Relative tolerance (see `atol`).
    pub rtol: f64,
    /// The share of requests compared, from 0 to 1, spread evenly (0.25: every fourth).
    pub sample: f64,
    /// Comparisons that may be pending at once, the one the candidate is running included;
    /// beyond it they are dropped.
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
    recorder: Recorder,
    sender: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

/// One request on its way to the candidate.
struct Job {
    ticket: Ticket,
    inputs: Vec<Tensor>,
    primary: Vec<Tensor>,
}

/// Checks that `candidate` can stand in for `primary`: the same inputs (names, order, dtypes,
/// ranks where both say) and the same outputs (count and names where both declare them, dtypes).
/// The error says how the candidate differs: "the candidate takes inputs … where the primary …".
pub fn check_signatures(primary: &Signature, candidate: &Signature) -> std::result::Result<(), String> {
    let fail = |what: String| Err(format!("the candidate {what}"));
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
        check_signatures(primary.signature(), candidate.signature())
            .map_err(|message| Error::InvalidInput { input: None, message: format!("shadow: {message}") })?;
        let names = primary.output_names(primary.signature().outputs.len().max(1));
        let recorder = Recorder::new(names, &options)?;
        // Unbounded: the recorder admits at most `options.queue` jobs at a time.
        let (sender, receiver) = channel();
        let worker = {
            let candidate = candidate.clone();
            std::thread::Builder::new()
                .name("rivet-shadow".into())
                .spawn(move || work(receiver, candidate))
                .map_err(|e| Error::backend("shadow", format!("cannot start the shadow's thread: {e}")))?
        };
        Ok(Shadow {
            primary,
            candidate_backend: candidate.backend(),
            recorder,
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    /// The counts and latencies so far.
    pub fn stats(&self) -> ShadowStats {
        self.recorder.stats()
    }

    /// Waits until every queued comparison is done.
    pub fn flush(&self) {
        self.recorder.flush()
    }

    /// The candidate's backend.
    pub fn candidate_backend(&self) -> &Backend {
        &self.candidate_backend
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
        if let Admission::Compare(ticket) = self.recorder.admit(started.elapsed()) {
            let job = Job {
                ticket,
                inputs: inputs.iter().map(TensorView::to_tensor).collect(),
                primary: outputs.clone(),
            };
            if let Some(sender) = &self.sender {
                // Only fails once the worker is gone; the ticket then records itself as lost.
                let _ = sender.send(job);
            }
        }
        Ok(outputs)
    }
}

/// Lowers the calling thread to the lowest scheduling priority, so that a shadow's work takes
/// only CPU time the primary and its callers leave: Linux's `SCHED_IDLE` policy (a thread of
/// any other policy that wakes up preempts it at once), or nice 19 where that is refused;
/// elsewhere it does nothing. Shadow threads call it when they start.
pub fn background_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls only read their arguments; on Linux, pid 0 (sched_setscheduler) and
    // PRIO_PROCESS with 0 (setpriority) name the calling thread. A failure leaves the priority
    // as it was, which is harmless.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

/// The worker: runs the candidate on each job and records the comparison.
fn work(receiver: Receiver<Job>, candidate: Arc<dyn Model>) {
    background_thread();
    for job in receiver {
        let views: Vec<TensorView<'_>> = job.inputs.iter().map(Tensor::view).collect();
        let started = Instant::now();
        let result = match catch_quietly(|| candidate.execute(&views)) {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(format!("the candidate panicked: {}", panic_text(&*payload))),
        };
        let _ = job.ticket.record(&job.inputs, &job.primary, result, started.elapsed(), None);
    }
}
