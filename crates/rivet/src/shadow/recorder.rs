//! The bookkeeping of a shadow, apart from how the candidate is run: which requests are
//! compared, how many may wait, the comparison itself, the counts, the latencies and the
//! captures. [`Shadow`](super::Shadow) runs the candidate on a thread of its own; a server runs
//! it through the candidate's own queue and records here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rivet_core::{Error, Result, Tensor};

use super::capture::Captures;
use super::compare::compare_all;
use super::{Latency, OutputComparison, ShadowOptions, ShadowStats};

/// Counts, latencies and captures of one primary–candidate pair; cheap to clone (shared).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    atol: f64,
    rtol: f64,
    sample: f64,
    queue: u64,
    names: Arc<[String]>,
    requests: AtomicU64,
    skipped: AtomicU64,
    dropped: AtomicU64,
    state: Mutex<State>,
    /// Signalled whenever a comparison finishes.
    idle: Condvar,
    captures: Mutex<Option<Captures>>,
}

/// What changes under the lock.
#[derive(Default)]
struct State {
    pending: u64,
    stats: ShadowStats,
    primary_times: VecDeque<f64>,
    candidate_times: VecDeque<f64>,
}

/// What becomes of a request the primary answered.
#[must_use = "a ticket holds a place in the queue until it is recorded"]
pub enum Admission {
    /// Sampling leaves it out.
    Skipped,
    /// As many comparisons as the queue holds are pending: this one is dropped.
    Dropped,
    /// Run the candidate on it and record the result with the ticket.
    Compare(Ticket),
}

/// A comparison admitted into the queue. Recording it frees its place; a ticket dropped
/// unrecorded frees it too and counts as a candidate error.
#[must_use = "a ticket holds a place in the queue until it is recorded"]
pub struct Ticket {
    inner: Arc<Inner>,
    recorded: bool,
}

/// How one comparison came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every output within the tolerance; the largest absolute difference over the outputs.
    Matched {
        /// The largest `|candidate − primary|` over every output.
        max_abs_diff: f64,
    },
    /// At least one output outside the tolerance.
    Diverged {
        /// The largest `|candidate − primary|` over every output (infinite when an output's
        /// dtype or shape differs).
        max_abs_diff: f64,
    },
    /// The candidate failed, panicked or returned a different number of outputs.
    Error(String),
}

const LATENCY_WINDOW: usize = 4096;

fn push_time(times: &mut VecDeque<f64>, took: Duration) {
    if times.len() == LATENCY_WINDOW {
        times.pop_front();
    }
    times.push_back(took.as_secs_f64() * 1e3);
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

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> ShadowStats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.requests = self.requests.load(Ordering::Relaxed);
        stats.skipped = self.skipped.load(Ordering::Relaxed);
        stats.dropped = self.dropped.load(Ordering::Relaxed);
        stats.primary_latency = percentiles(&state.primary_times, stats.requests);
        stats.candidate_latency =
            percentiles(&state.candidate_times, stats.compared + stats.candidate_errors);
        stats
    }

    fn release(&self) {
        self.lock().pending -= 1;
        self.idle.notify_all();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The shadow is gone: the capture directory keeps its final counts.
        let stats = self.snapshot();
        if let Some(captures) = self.captures.get_mut().unwrap_or_else(|e| e.into_inner()).as_ref() {
            captures.write_stats(&stats);
        }
    }
}

impl Recorder {
    /// A recorder for outputs named `names` (the primary's), with `options`' tolerances,
    /// sampling, queue and capture directory. Fails when an option is out of range or the
    /// capture directory cannot be made.
    pub fn new(names: Arc<[String]>, options: &ShadowOptions) -> Result<Recorder> {
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
        Ok(Recorder {
            inner: Arc::new(Inner {
                atol: options.atol,
                rtol: options.rtol,
                sample: options.sample,
                queue: options.queue as u64,
                names,
                requests: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                idle: Condvar::new(),
                captures: Mutex::new(captures),
            }),
        })
    }

    /// Counts a request the primary answered in `primary`, and says whether to compare it:
    /// `sample` of the requests, evenly spread, while fewer than `queue` comparisons are pending.
    pub fn admit(&self, primary: Duration) -> Admission {
        let inner = &self.inner;
        let n = inner.requests.fetch_add(1, Ordering::Relaxed);
        let sampled = inner.sample >= 1.0
            || ((n + 1) as f64 * inner.sample).floor() > (n as f64 * inner.sample).floor();
        let mut state = inner.lock();
        push_time(&mut state.primary_times, primary);
        if !sampled {
            inner.skipped.fetch_add(1, Ordering::Relaxed);
            return Admission::Skipped;
        }
        if state.pending >= inner.queue {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return Admission::Dropped;
        }
        state.pending += 1;
        Admission::Compare(Ticket { inner: Arc::clone(inner), recorded: false })
    }

    /// The counts and latencies so far.
    pub fn stats(&self) -> ShadowStats {
        self.inner.snapshot()
    }

    /// Waits until no admitted comparison is pending.
    pub fn flush(&self) {
        let mut state = self.inner.lock();
        while state.pending > 0 {
            state = self.inner.idle.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Comparisons admitted and not yet recorded.
    pub fn pending(&self) -> u64 {
        self.inner.lock().pending
    }
}

impl Ticket {
    /// Records the candidate's answer (`Err` with its message when it failed) on `inputs`,
    /// next to the primary's `primary` outputs, and how long the candidate took. A divergent
    /// request is captured, named by `request_id` where there is one.
    pub fn record(
        mut self,
        inputs: &[Tensor],
        primary: &[Tensor],
        candidate: std::result::Result<Vec<Tensor>, String>,
        took: Duration,
        request_id: Option<&str>,
    ) -> Outcome {
        self.recorded = true;
        let inner = &*self.inner;
        let compared = candidate.and_then(|outputs| {
            compare_all(primary, &outputs, &inner.names, inner.atol, inner.rtol).map(|c| (c, outputs))
        });
        let max_abs = |comparisons: &[OutputComparison]| {
            comparisons
                .iter()
                .map(|c| if c.mismatch.is_some() { f64::INFINITY } else { c.max_abs_diff })
                .fold(0.0, f64::max)
        };
        let (outcome, capture) = {
            let mut state = inner.lock();
            push_time(&mut state.candidate_times, took);
            match compared {
                Err(message) => {
                    state.stats.candidate_errors += 1;
                    state.stats.last_candidate_error = Some(message.clone());
                    (Outcome::Error(message), None)
                }
                Ok((comparisons, outputs)) => {
                    state.stats.compared += 1;
                    let max_abs_diff = max_abs(&comparisons);
                    if comparisons.iter().any(OutputComparison::diverged) {
                        state.stats.diverged += 1;
                        (Outcome::Diverged { max_abs_diff }, Some((comparisons, outputs)))
                    } else {
                        state.stats.matched += 1;
                        (Outcome::Matched { max_abs_diff }, None)
                    }
                }
            }
        };
        if let Some((comparisons, outputs)) = capture {
            let mut captures = inner.captures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(captures) = captures.as_mut() {
                let written =
                    captures.write(inputs, primary, &outputs, &inner.names, &comparisons, request_id);
                {
                    let mut state = inner.lock();
                    match written {
                        Ok(()) => state.stats.captured += 1,
                        Err(e) => {
                            state.stats.capture_errors += 1;
                            state.stats.last_capture_error = Some(e.to_string());
                        }
                    }
                }
                captures.write_stats(&inner.snapshot());
            }
        }
        inner.release();
        outcome
    }
}

impl Ticket {
    /// Gives the comparison up because the candidate could not take the request (its own queue
    /// was full): counted as dropped, like one the shadow's queue had no room for.
    pub fn dropped(mut self) {
        self.recorded = true;
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        self.inner.release();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.recorded {
            {
                let mut state = self.inner.lock();
                state.stats.candidate_errors += 1;
                state.stats.last_candidate_error =
                    Some("the comparison was abandoned before the candidate answered".into());
            }
            self.inner.release();
        }
    }
}
