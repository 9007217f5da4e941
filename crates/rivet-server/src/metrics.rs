//! Prometheus metrics, with Triton's names where Triton has one, served on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Every metric the server keeps, registered in one registry.
pub struct Metrics {
    registry: Registry,
    success: IntCounterVec,
    failure: IntCounterVec,
    count: IntCounterVec,
    exec_count: IntCounterVec,
    request_us: IntCounterVec,
    queue_us: IntCounterVec,
    compute_us: IntCounterVec,
    latency: HistogramVec,
    batch_size: HistogramVec,
    shadow_comparisons: IntCounterVec,
    shadow_max_abs_diff: HistogramVec,
    shadow_latency: HistogramVec,
}

/// The metrics of one model's shadow (the labels `model` and `shadow` already applied).
pub struct ShadowMetrics {
    /// Comparisons whose every output matched.
    pub matched: IntCounter,
    /// Comparisons with an output outside the tolerance.
    pub diverged: IntCounter,
    /// Requests on which the candidate failed.
    pub error: IntCounter,
    /// Comparisons dropped because too many were pending.
    pub dropped: IntCounter,
    /// The largest absolute difference of each comparison.
    pub max_abs_diff: Histogram,
    /// The primary's request latency, arrival to answer, in seconds.
    pub primary_latency: Histogram,
    /// The candidate's latency on the same requests, in seconds.
    pub candidate_latency: Histogram,
}

/// One model's metrics (the labels `model` and `version` already applied).
pub struct ModelMetrics {
    /// Requests answered with outputs.
    pub success: IntCounter,
    /// Requests answered with an error.
    pub failure: IntCounter,
    /// Inferences run: a request's batch size, or 1 for a model without a batch dimension.
    pub count: IntCounter,
    /// Model executions (a batch of several requests is one).
    pub exec_count: IntCounter,
    /// Cumulative request time, arrival to answer, in microseconds.
    pub request_us: IntCounter,
    /// Cumulative time requests waited in the queue, in microseconds.
    pub queue_us: IntCounter,
    /// Cumulative time spent running the model, in microseconds.
    pub compute_us: IntCounter,
    /// Request latency in seconds.
    pub latency: Histogram,
    /// Rows per model execution.
    pub batch_size: Histogram,
    last_inference_ms: AtomicU64,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), &["model", "version"]).expect("valid metric");
    registry.register(Box::new(vec.clone())).expect("metric names are unique");
    vec
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> HistogramVec {
    labelled_histogram(registry, name, help, buckets, &["model", "version"])
}

fn labelled_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    let vec =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    registry.register(Box::new(vec.clone())).expect("metric names are unique");
    vec
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        Metrics {
            success: counter(
                &registry,
                "nv_inference_request_success",
                "Number of successful inference requests",
            ),
            failure: counter(
                &registry,
                "nv_inference_request_failure",
                "Number of failed inference requests",
            ),
            count: counter(
                &registry,
                "nv_inference_count",
                "Number of inferences performed (a batch of n counts n)",
            ),
            exec_count: counter(&registry, "nv_inference_exec_count", "Number of model executions performed"),
            request_us: counter(
                &registry,
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
            ),
            queue_us: counter(
                &registry,
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
            ),
            compute_us: counter(
                &registry,
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
            ),
            latency: histogram(
                &registry,
                "rivet_inference_request_duration_seconds",
                "Inference request latency, arrival to answer, in seconds",
                prometheus::exponential_buckets(5e-5, 2.0, 18).expect("valid buckets"),
            ),
            batch_size: histogram(
                &registry,
                "rivet_inference_batch_size",
                "Rows per model execution",
                prometheus::exponential_buckets(1.0, 2.0, 11).expect("valid buckets"),
            ),
            shadow_comparisons: {
                let vec = IntCounterVec::new(
                    Opts::new(
                        "rivet_shadow_comparisons_total",
                        "Requests a shadow model was compared on, by outcome (match, diverged, error, dropped)",
                    ),
                    &["model", "shadow", "outcome"],
                )
                .expect("valid metric");
                registry.register(Box::new(vec.clone())).expect("metric names are unique");
                vec
            },
            shadow_max_abs_diff: labelled_histogram(
                &registry,
                "rivet_shadow_max_abs_diff",
                "The largest absolute difference between the shadow's outputs and the primary's, per comparison",
                vec![1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0],
                &["model", "shadow"],
            ),
            shadow_latency: labelled_histogram(
                &registry,
                "rivet_shadow_request_duration_seconds",
                "Latency of the primary and of its shadow on the same requests, in seconds",
                prometheus::exponential_buckets(5e-5, 2.0, 18).expect("valid buckets"),
                &["model", "shadow", "side"],
            ),
            registry,
        }
    }
}

impl Metrics {
    /// The metrics of model `name`, version `version`.
    pub fn for_model(&self, name: &str, version: &str) -> ModelMetrics {
        let labels = [name, version];
        ModelMetrics {
            success: self.success.with_label_values(&labels),
            failure: self.failure.with_label_values(&labels),
            count: self.count.with_label_values(&labels),
            exec_count: self.exec_count.with_label_values(&labels),
            request_us: self.request_us.with_label_values(&labels),
            queue_us: self.queue_us.with_label_values(&labels),
            compute_us: self.compute_us.with_label_values(&labels),
            latency: self.latency.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            last_inference_ms: AtomicU64::new(0),
        }
    }

    /// The metrics of model `name` shadowed by model `shadow`.
    pub fn for_shadow(&self, name: &str, shadow: &str) -> ShadowMetrics {
        let outcome = |o: &str| self.shadow_comparisons.with_label_values(&[name, shadow, o]);
        let side = |s: &str| self.shadow_latency.with_label_values(&[name, shadow, s]);
        ShadowMetrics {
            matched: outcome("match"),
            diverged: outcome("diverged"),
            error: outcome("error"),
            dropped: outcome("dropped"),
            max_abs_diff: self.shadow_max_abs_diff.with_label_values(&[name, shadow]),
            primary_latency: side("primary"),
            candidate_latency: side("candidate"),
        }
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Whole microseconds in `d`.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ModelMetrics {
    /// Records one answered request.
    pub fn request_done(&self, ok: bool, took: Duration) {
        if ok { &self.success } else { &self.failure }.inc();
        self.request_us.inc_by(micros(took));
        self.latency.observe(took.as_secs_f64());
    }

    /// Records one model execution over `rows` inferences.
    pub fn executed(&self, rows: u64, compute: Duration) {
        self.exec_count.inc();
        self.count.inc_by(rows);
        self.compute_us.inc_by(micros(compute));
        self.batch_size.observe(rows as f64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }

    /// When the model last ran, in milliseconds since the Unix epoch (0: never).
    pub fn last_inference_ms(&self) -> u64 {
        self.last_inference_ms.load(Ordering::Relaxed)
    }
}
