//! One served version of a model: its queue, metrics, shadow and pipeline, how a request runs
//! through them, and the protocol-neutral answers (metadata, config, statistics) built from it.
//! The repository that holds them, and loads and unloads them, is [`crate::control`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rivet::shadow::{Admission, Outcome, Recorder};
use rivet::{Backend, DType, Dim, Inputs, LoadOptions, Model, ModelFormat, Tensor, TensorSpec};
use tokio::sync::oneshot;

use crate::batcher::{BatchPolicy, Job, Queue};
use crate::codec::RequestInputs;
use crate::config::{ModelConfig, ShadowConfig};
use crate::error::{ServeError, StartError};
use crate::metrics::{Metrics, ModelMetrics, ShadowMetrics};
use crate::rows::{ColumnKind, ColumnValues, PipelineFinder, RowPipeline};

/// One version of a model: its config and whether it loaded.
pub struct ModelEntry {
    /// The folder's name, which is the model's.
    pub name: String,
    /// The folder's configuration.
    pub config: ModelConfig,
    /// Serving, or why not.
    pub state: Result<Arc<Served>, StartError>,
}

/// A loaded model and its queue.
pub struct Served {
    /// The model.
    pub model: Arc<dyn Model>,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// Its metrics.
    pub metrics: Arc<ModelMetrics>,
    queue: Queue,
    shadow: RwLock<Option<Arc<Shadowing>>>,
    /// The preprocessing pipeline its raw columns go through, for a model served with one.
    pub pipeline: Option<Arc<dyn RowPipeline>>,
}

/// A model's shadow: the candidate model of the repository its requests also go to, and what
/// the comparisons found.
pub struct Shadowing {
    /// The candidate's name.
    pub name: String,
    candidate: Arc<Served>,
    config: ModelConfig,
    /// The candidate's queue for this shadow's requests alone (batched as the candidate's
    /// config says), on threads of the lowest priority: the shadow takes CPU time the primary
    /// leaves, and its requests never queue ahead of the candidate's own clients.
    lane: Queue,
    /// The counts, latencies and captures.
    pub recorder: Recorder,
    metrics: ShadowMetrics,
}

/// A tensor's name, dtype and shape as metadata reports them (-1 for a dynamic size).
pub struct TensorMeta {
    /// The name.
    pub name: String,
    /// The dtype, when the model declares it.
    pub dtype: Option<DType>,
    /// The dimensions (empty when the model does not declare them).
    pub shape: Vec<i64>,
    /// For a raw column of a model served with a pipeline: what it holds (`dtype` is `None`).
    pub column: Option<ColumnKind>,
}

impl TensorMeta {
    /// The protocol datatype (empty when the model does not declare it).
    pub fn datatype(&self) -> &'static str {
        match (self.column, self.dtype) {
            (Some(kind), _) => kind.datatype(),
            (None, Some(dtype)) => crate::codec::datatype_name(dtype),
            (None, None) => "",
        }
    }

    /// The model config's type number (0, `TYPE_INVALID`, when undeclared).
    pub fn config_type(&self) -> i32 {
        match (self.column, self.dtype) {
            (Some(kind), _) => kind.config_type(),
            (None, Some(dtype)) => crate::codec::config_type(dtype),
            (None, None) => 0,
        }
    }

    /// The model config's type name.
    pub fn config_type_name(&self) -> String {
        match (self.column, self.dtype) {
            (Some(kind), _) => kind.config_type_name().to_owned(),
            (None, Some(dtype)) => crate::codec::config_type_name(dtype),
            (None, None) => "TYPE_INVALID".to_owned(),
        }
    }
}

/// A model's statistics, as Triton's statistics extension reports them.
pub struct Statistics {
    /// Milliseconds since the Unix epoch of the last execution (0: never).
    pub last_inference: u64,
    /// Inferences run (a batch of n rows counts n).
    pub inference_count: u64,
    /// Model executions.
    pub execution_count: u64,
    /// Successful requests and their cumulative time in nanoseconds.
    pub success: (u64, u64),
    /// Failed requests (their time is not kept).
    pub fail: u64,
    /// Cumulative queue time in nanoseconds.
    pub queue_ns: u64,
    /// Cumulative compute time in nanoseconds.
    pub compute_ns: u64,
}

impl ModelEntry {
    /// Loads version `config.version` of model `name` from the model file in `dir`.
    pub(crate) fn load(
        name: &str,
        dir: &Path,
        config: ModelConfig,
        metrics: &Metrics,
        pipelines: Option<&PipelineFinder>,
    ) -> ModelEntry {
        let state = Served::load(name, dir, &config, metrics, pipelines).map(Arc::new);
        ModelEntry { name: name.to_owned(), config, state }
    }

    /// A model that could not be read at all (its config), with why.
    pub(crate) fn failed(name: &str, reason: StartError) -> ModelEntry {
        ModelEntry { name: name.to_owned(), config: ModelConfig::default(), state: Err(reason) }
    }

    /// The loaded model, or 503 saying why it is not ready.
    pub fn served(&self) -> Result<&Served, ServeError> {
        self.state.as_deref().map_err(|reason| {
            ServeError::Unavailable(format!("model \"{}\" is not ready: {reason}", self.name))
        })
    }

    /// Runs one request: `inputs` by name; answers the model's outputs with their names.
    /// `protocol` (`http`, `grpc`) and `id` (the request's own, possibly empty) name it in the
    /// log: a span per request, and an access line at info on the `rivet::access` target with
    /// its status and its queue, compute and total times.
    pub async fn infer(
        &self,
        protocol: &'static str,
        id: &str,
        inputs: impl Into<RequestInputs>,
    ) -> Result<Vec<(String, Tensor)>, ServeError> {
        let inputs = inputs.into();
        let start = Instant::now();
        let span = tracing::info_span!(
            "request",
            protocol,
            id,
            model = %self.name,
            version = %self.config.version,
        );
        let (result, queued, compute) = match self.served() {
            Ok(served) => {
                let inputs = match served.tensors(&self.name, inputs).await {
                    Ok(inputs) => inputs,
                    Err(e) => {
                        served.metrics.request_done(false, start.elapsed());
                        return self.answered(&span, start, Err(e), None, None);
                    }
                };
                let shadow = served.shadow();
                // Tensors share their data: keeping the inputs for the shadow copies none.
                let kept = shadow.as_ref().map(|_| inputs.clone());
                let (result, queued, compute) = served.infer(&self.name, &self.config, inputs, &span).await;
                let took = start.elapsed();
                served.metrics.request_done(result.is_ok(), took);
                if let (Some(shadow), Some(inputs), Ok(outputs)) = (&shadow, kept, &result) {
                    let primary = outputs.iter().map(|(_, t)| t.clone()).collect();
                    shadow.submit(id, served.model.signature(), inputs, primary, took);
                }
                (result, queued, compute)
            }
            Err(e) => (Err(e), None, None),
        };
        self.answered(&span, start, result, queued, compute)
    }

    /// Logs a request's access line and passes its result on.
    fn answered(
        &self,
        span: &tracing::Span,
        start: Instant,
        result: Result<Vec<(String, Tensor)>, ServeError>,
        queued: Option<Duration>,
        compute: Option<Duration>,
    ) -> Result<Vec<(String, Tensor)>, ServeError> {
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind_name(),
        };
        span.in_scope(|| {
            tracing::info!(
                target: "rivet::access",
                status,
                queue_us = micros(queued),
                compute_us = micros(compute),
                total_us = start.elapsed().as_micros() as u64,
                "request"
            )
        });
        result
    }

    /// Inputs and outputs as metadata reports them: with a batch dimension, it is -1.
    pub fn metadata(&self) -> Result<(Vec<TensorMeta>, Vec<TensorMeta>), ServeError> {
        let signature = self.served()?.model.signature();
        let meta = |specs: &[TensorSpec]| -> Vec<TensorMeta> {
            specs
                .iter()
                .map(|spec| {
                    let mut shape: Vec<i64> =
                        spec.shape.as_deref().unwrap_or_default().iter().map(Dim::as_i64).collect();
                    if self.config.max_batch_size > 0 {
                        if let Some(first) = shape.first_mut() {
                            *first = -1;
                        }
                    }
                    TensorMeta { name: spec.name.clone(), dtype: spec.dtype, shape, column: None }
                })
                .collect()
        };
        let inputs = match &self.served()?.pipeline {
            // One dimension, the rows (batched or not).
            Some(pipeline) => pipeline
                .columns()
                .iter()
                .map(|c| TensorMeta {
                    name: c.name.clone(),
                    dtype: None,
                    shape: vec![-1],
                    column: Some(c.kind),
                })
                .collect(),
            None => meta(&signature.inputs),
        };
        Ok((inputs, meta(&signature.outputs)))
    }

    /// The platform name Triton gives this format.
    pub fn platform(&self) -> &'static str {
        match self.state.as_ref().map(|s| s.format) {
            Ok(ModelFormat::TorchScript) => "pytorch_libtorch",
            Ok(ModelFormat::Onnx) => "onnxruntime_onnx",
            Err(_) => "",
        }
    }

    /// The backend running it (the configured name when it did not load).
    pub fn backend_name(&self) -> String {
        match &self.state {
            Ok(served) => served.model.backend().to_string(),
            Err(_) => self.config.backend.clone(),
        }
    }

    /// The model shadowing this one, if any.
    pub fn shadow(&self) -> Option<Arc<Shadowing>> {
        self.state.as_ref().ok()?.shadow()
    }

    /// The statistics extension's numbers.
    pub fn statistics(&self) -> Statistics {
        let Ok(served) = &self.state else {
            return Statistics {
                last_inference: 0,
                inference_count: 0,
                execution_count: 0,
                success: (0, 0),
                fail: 0,
                queue_ns: 0,
                compute_ns: 0,
            };
        };
        let m = &served.metrics;
        let ns = |us: u64| us.saturating_mul(1000);
        Statistics {
            last_inference: m.last_inference_ms(),
            inference_count: m.count.get(),
            execution_count: m.exec_count.get(),
            success: (m.success.get(), ns(m.request_us.get())),
            fail: m.failure.get(),
            queue_ns: ns(m.queue_us.get()),
            compute_ns: ns(m.compute_us.get()),
        }
    }
}

impl Served {
    /// The model shadowing this one, if any.
    pub fn shadow(&self) -> Option<Arc<Shadowing>> {
        self.shadow.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The model's input tensors for a request: its tensors as they are, or, for a model served
    /// with a pipeline, the features the pipeline makes of its raw columns (each of shape
    /// `[rows]`, or `[rows, 1]` as pandas' codec sends them). `BYTES` inputs only a pipeline
    /// takes.
    async fn tensors(&self, model: &str, inputs: RequestInputs) -> Result<Vec<(String, Tensor)>, ServeError> {
        let Some(pipeline) = &self.pipeline else {
            if let Some(text) = inputs.texts.first() {
                return Err(ServeError::bad(format!(
                    "input \"{}\": datatype \"BYTES\" is not supported by model \"{model}\" (BYTES inputs \
                     are the text columns of a model served with a preprocessing pipeline)",
                    text.name
                )));
            }
            return Ok(inputs.tensors);
        };
        let columns = raw_columns(pipeline.as_ref(), inputs)?;
        let pipeline = Arc::clone(pipeline);
        // The pipeline's work is the CPU's: off the async threads.
        let features = tokio::task::spawn_blocking(move || pipeline.features(columns))
            .await
            .map_err(|e| ServeError::Internal(format!("the pipeline stopped: {e}")))?
            .map_err(ServeError::BadRequest)?;
        let name =
            self.model.signature().inputs.first().map_or_else(|| "features".to_owned(), |s| s.name.clone());
        Ok(vec![(name, features)])
    }

    /// Attaches `shadow` (or detaches with `None`).
    pub(crate) fn set_shadow(&self, shadow: Option<Shadowing>) {
        *self.shadow.write().unwrap_or_else(|e| e.into_inner()) = shadow.map(Arc::new);
    }

    fn load(
        name: &str,
        dir: &Path,
        config: &ModelConfig,
        metrics: &Metrics,
        pipelines: Option<&PipelineFinder>,
    ) -> Result<Served, StartError> {
        let file = config.model_path(dir)?;
        let pipeline = match (crate::rows::pipeline_beside(&file), pipelines) {
            (None, _) => None,
            (Some(_), Some(find)) => find(&file).map_err(StartError::ModelFile)?,
            (Some(path), None) => {
                return Err(StartError::ModelFile(format!(
                    "{} has a preprocessing pipeline ({}): a server that takes raw rows is \
                     rivet-tabular's (`rivet serve` runs it when the repository holds a pipeline \
                     at start)",
                    file.display(),
                    path.display()
                )))
            }
        };
        let backend: Backend = config.backend.parse()?;
        let mut options = LoadOptions {
            backend: backend.clone(),
            intra_op_threads: config.threads,
            ..LoadOptions::default()
        };
        for (key, value) in &config.options {
            options.set_option_str(&format!("{key}={value}"), &backend)?;
        }
        let format = rivet::format::detect_format(&file, backend.name())?;
        let model = rivet::load(&file, &options)?;
        if config.max_batch_size > 0 {
            check_batch_dimension(model.signature(), config.max_batch_size)?;
        }
        if pipeline.is_some() && model.signature().inputs.len() != 1 {
            return Err(StartError::ModelFile(format!(
                "{} takes {} inputs; a pipeline feeds a model with one [rows, features] input",
                file.display(),
                model.signature().inputs.len()
            )));
        }
        let metrics = Arc::new(metrics.for_model(name, &config.version));
        let queue = Queue::start(
            Arc::clone(&model),
            batch_policy(config),
            config.max_queue_size,
            config.instances,
            Arc::clone(&metrics),
            false,
        )
        .map_err(|source| StartError::Threads { what: "the model's threads", source })?;
        Ok(Served { model, file, format, metrics, queue, shadow: RwLock::new(None), pipeline })
    }

    /// Checks, queues and answers one request; with the time it waited in the queue and the
    /// time its execution took, when it got that far.
    async fn infer(
        &self,
        name: &str,
        config: &ModelConfig,
        inputs: Vec<(String, Tensor)>,
        span: &tracing::Span,
    ) -> (Result<Vec<(String, Tensor)>, ServeError>, Option<Duration>, Option<Duration>) {
        let (reply, answer) = oneshot::channel();
        let job = match self.job(config, inputs, reply) {
            Ok(job) => job,
            Err(e) => return (Err(e), None, None),
        };
        if let Err(e) = self.queue.submit(job, name) {
            return (Err(e), None, None);
        }
        span.in_scope(|| tracing::debug!("queued"));
        let Ok(answered) = answer.await else {
            let lost = ServeError::Internal(format!("model \"{name}\": the run ended without an answer"));
            return (Err(lost), None, None);
        };
        let outputs = answered.outputs.map(|outputs| {
            let names = self.model.output_names(outputs.len());
            names.iter().cloned().zip(outputs).collect()
        });
        (outputs, Some(answered.queued), Some(answered.compute))
    }

    /// A request's job: its inputs checked against the signature and put in its order, its rows
    /// counted, its answer to go to `reply`.
    fn job(
        &self,
        config: &ModelConfig,
        inputs: Vec<(String, Tensor)>,
        reply: oneshot::Sender<crate::batcher::Reply>,
    ) -> Result<Job, ServeError> {
        let signature = self.model.signature();
        // The one validation point: names, dtypes, ranks and fixed sizes.
        signature.bind(Inputs::Named(inputs.iter().map(|(n, t)| (n.as_str(), t.view())).collect()))?;
        let inputs = in_signature_order(signature, inputs);
        let rows = if config.max_batch_size > 0 { batch_rows(&inputs, config.max_batch_size)? } else { 1 };
        Ok(Job {
            inputs: inputs.into_iter().map(|(_, t)| t).collect(),
            rows,
            enqueued: Instant::now(),
            reply,
        })
    }
}

/// How `config` batches.
fn batch_policy(config: &ModelConfig) -> BatchPolicy {
    let batching = config.dynamic_batching.as_ref();
    BatchPolicy {
        max_rows: if batching.is_some() { config.max_batch_size } else { 0 },
        target_rows: batching
            .and_then(|b| b.preferred_batch_size.iter().copied().max())
            .unwrap_or(config.max_batch_size),
        max_delay: Duration::from_micros(batching.map_or(0, |b| b.max_queue_delay_us)),
        idle_first: batching.is_some_and(|b| b.policy == crate::config::BatchingPolicy::IdleFirst),
    }
}

/// A request's raw columns in `pipeline`'s order, each checked for its name, kind and rows.
fn raw_columns(
    pipeline: &dyn RowPipeline,
    mut inputs: RequestInputs,
) -> Result<Vec<(String, ColumnValues)>, ServeError> {
    let expected = pipeline.columns();
    let names = || expected.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let known = |name: &str| expected.iter().any(|c| c.name == name);
    if let Some(name) =
        inputs.tensors.iter().map(|(n, _)| n).chain(inputs.texts.iter().map(|t| &t.name)).find(|n| !known(n))
    {
        return Err(ServeError::bad(format!("unknown column \"{name}\" (the pipeline takes: {})", names())));
    }
    let mut rows: Option<(usize, String)> = None;
    let mut columns = Vec::with_capacity(expected.len());
    for column in expected {
        let name = &column.name;
        let (shape, values) = if let Some(at) = inputs.texts.iter().position(|t| &t.name == name) {
            let text = inputs.texts.swap_remove(at);
            (text.shape, ColumnValues::Text(text.values))
        } else if let Some(at) = inputs.tensors.iter().position(|(n, _)| n == name) {
            let (_, tensor) = inputs.tensors.swap_remove(at);
            (tensor.shape().to_vec(), column_values(name, column.kind, &tensor)?)
        } else {
            return Err(ServeError::bad(format!(
                "missing column \"{name}\" (the pipeline takes: {})",
                names()
            )));
        };
        if values.kind() != column.kind {
            return Err(ServeError::bad(format!(
                "column \"{name}\": expected {}, got {}",
                column.kind.datatype(),
                values.kind().datatype()
            )));
        }
        let n = match shape.as_slice() {
            [n] | [n, 1] => *n,
            other => {
                return Err(ServeError::bad(format!(
                    "column \"{name}\": shape {other:?} is not [rows] or [rows, 1]"
                )))
            }
        };
        match &rows {
            None => rows = Some((n, name.clone())),
            Some((m, first)) if *m != n => {
                return Err(ServeError::bad(format!(
                    "columns \"{first}\" and \"{name}\" have {m} and {n} rows: they must agree"
                )))
            }
            Some(_) => {}
        }
        columns.push((name.clone(), values));
    }
    Ok(columns)
}

/// A tensor column's values as `kind` wants them: integers widen to INT64, and to FP64 for a
/// number column (pandas sends a float column without missing values as integers).
fn column_values(name: &str, kind: ColumnKind, tensor: &Tensor) -> Result<ColumnValues, ServeError> {
    let bad = |e: rivet::Error| ServeError::bad(format!("column \"{name}\": {e}"));
    let ints = || -> Result<Option<Vec<i64>>, ServeError> {
        Ok(match tensor.dtype() {
            DType::I64 => Some(tensor.as_slice::<i64>().map_err(bad)?.to_vec()),
            DType::I32 => {
                Some(tensor.as_slice::<i32>().map_err(bad)?.iter().map(|&v| i64::from(v)).collect())
            }
            _ => None,
        })
    };
    let values = match (kind, tensor.dtype()) {
        (ColumnKind::Float, DType::F64) => {
            ColumnValues::Float(tensor.as_slice::<f64>().map_err(bad)?.to_vec())
        }
        (ColumnKind::Float, DType::F32) => ColumnValues::Float(
            tensor.as_slice::<f32>().map_err(bad)?.iter().map(|&v| f64::from(v)).collect(),
        ),
        (ColumnKind::Float, _) if ints()?.is_some() => {
            ColumnValues::Float(ints()?.unwrap_or_default().into_iter().map(|v| v as f64).collect())
        }
        (ColumnKind::Int, _) if ints()?.is_some() => ColumnValues::Int(ints()?.unwrap_or_default()),
        (ColumnKind::Bool, DType::Bool) => {
            ColumnValues::Bool(tensor.as_bytes().iter().map(|&b| b != 0).collect())
        }
        (_, dtype) => {
            return Err(ServeError::bad(format!(
                "column \"{name}\": expected {}, got {}",
                kind.datatype(),
                crate::codec::datatype_name(dtype)
            )))
        }
    };
    Ok(values)
}

/// `inputs` in the order `signature` declares them (as they are when it declares none).
fn in_signature_order(
    signature: &rivet::Signature,
    mut inputs: Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    if signature.inputs.is_empty() {
        return inputs;
    }
    let mut ordered = Vec::with_capacity(inputs.len());
    for spec in &signature.inputs {
        if let Some(at) = inputs.iter().position(|(n, _)| *n == spec.name) {
            ordered.push(inputs.swap_remove(at));
        }
    }
    ordered
}

impl Shadowing {
    /// The shadow `config` of model `name` (folder `dir`) on `primary`, with `entry` the
    /// candidate's served version (`None` when the repository does not serve it).
    pub(crate) fn attach(
        name: &str,
        primary: &Served,
        config: &ShadowConfig,
        dir: &Path,
        entry: Option<&ModelEntry>,
        metrics: &Metrics,
    ) -> Result<Shadowing, String> {
        let candidate = &config.model;
        if candidate == name {
            return Err(format!("[shadow] model \"{candidate}\" is this model: a shadow is another model"));
        }
        let entry =
            entry.ok_or_else(|| format!("[shadow] model \"{candidate}\" is not in the repository"))?;
        let served = entry
            .state
            .as_ref()
            .map_err(|reason| format!("[shadow] model \"{candidate}\" is not ready: {reason}"))?;
        let prefix = |e: String| format!("[shadow] model \"{candidate}\": {e}");
        rivet::shadow::check_signatures(primary.model.signature(), served.model.signature())
            .map_err(prefix)?;
        let names = primary.model.output_names(primary.model.signature().outputs.len().max(1));
        let options = config.options(dir);
        let recorder = Recorder::new(names, &options).map_err(|e| prefix(e.message_with_causes()))?;
        let lane = Queue::start(
            Arc::clone(&served.model),
            batch_policy(&entry.config),
            options.queue,
            1,
            Arc::clone(&served.metrics),
            true,
        )
        .map_err(|e| prefix(format!("cannot start the shadow's thread: {e}")))?;
        Ok(Shadowing {
            name: candidate.clone(),
            candidate: Arc::clone(served),
            config: entry.config.clone(),
            lane,
            recorder,
            metrics: metrics.for_shadow(name, candidate),
        })
    }

    /// Runs the candidate on one request through the shadow's lane.
    async fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, ServeError> {
        let (reply, answer) = oneshot::channel();
        let job = self.candidate.job(&self.config, inputs, reply)?;
        self.lane.submit(job, &self.name)?;
        let answered = answer.await.map_err(|_| {
            ServeError::Internal(format!("model \"{}\": the run ended without an answer", self.name))
        })?;
        let outputs = answered.outputs?;
        let names = self.candidate.model.output_names(outputs.len());
        Ok(names.iter().cloned().zip(outputs).collect())
    }

    /// Sends a request the primary answered (in `took`, with `primary`) to the candidate, unless
    /// sampling leaves it out or too many comparisons are pending; records the comparison when
    /// the candidate answers. Never waits.
    fn submit(
        self: &Arc<Self>,
        id: &str,
        signature: &rivet::Signature,
        inputs: Vec<(String, Tensor)>,
        primary: Vec<Tensor>,
        took: Duration,
    ) {
        self.metrics.primary_latency.observe(took.as_secs_f64());
        let ticket = match self.recorder.admit(took) {
            Admission::Skipped => return,
            Admission::Dropped => {
                self.metrics.dropped.inc();
                return;
            }
            Admission::Compare(ticket) => ticket,
        };
        let inputs = in_signature_order(signature, inputs);
        let kept: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
        let id = (!id.is_empty()).then(|| id.to_owned());
        let shadow = Arc::clone(self);
        tokio::spawn(async move {
            let span = tracing::debug_span!("shadow", model = %shadow.name);
            let start = Instant::now();
            let result = shadow.run(inputs).await;
            span.in_scope(|| tracing::debug!("shadow answered"));
            let took = start.elapsed();
            shadow.candidate.metrics.request_done(result.is_ok(), took);
            let result = match result {
                Ok(outputs) => Ok(outputs.into_iter().map(|(_, t)| t).collect()),
                // The candidate's queue is full or it is stopping: not compared, as when the
                // shadow's own queue is full.
                Err(ServeError::Unavailable(_)) => {
                    ticket.dropped();
                    shadow.metrics.dropped.inc();
                    return;
                }
                Err(e) => Err(e.to_string()),
            };
            shadow.metrics.candidate_latency.observe(took.as_secs_f64());
            // Comparing walks every element and a capture writes files: off the async threads.
            let recorded = tokio::task::spawn_blocking(move || {
                ticket.record(&kept, &primary, result, took, id.as_deref())
            })
            .await;
            let m = &shadow.metrics;
            match recorded {
                Ok(Outcome::Matched { max_abs_diff }) => {
                    m.matched.inc();
                    m.max_abs_diff.observe(max_abs_diff);
                }
                Ok(Outcome::Diverged { max_abs_diff }) => {
                    m.diverged.inc();
                    m.max_abs_diff.observe(max_abs_diff);
                }
                Ok(Outcome::Error(message)) => {
                    m.error.inc();
                    tracing::debug!(parent: &span, %message, "shadow failed");
                }
                Err(_) => m.error.inc(),
            }
        });
    }
}

/// The batch size of a request: the leading dimension every input shares.
fn batch_rows(inputs: &[(String, Tensor)], max: usize) -> Result<usize, ServeError> {
    let mut rows = None;
    for (name, tensor) in inputs {
        let Some(&n) = tensor.shape().first() else {
            return Err(ServeError::bad(format!(
                "input \"{name}\" is a scalar, but this model is served with a batch dimension \
                 (max_batch_size {max})"
            )));
        };
        match rows {
            None => rows = Some((n, name)),
            Some((m, first)) if m != n => {
                return Err(ServeError::bad(format!(
                    "inputs \"{first}\" and \"{name}\" have batch sizes {m} and {n}: they must agree"
                )))
            }
            Some(_) => {}
        }
    }
    let rows = rows.map_or(1, |(n, _)| n);
    if rows == 0 || rows > max {
        return Err(ServeError::bad(format!("batch size {rows} is not between 1 and max_batch_size {max}")));
    }
    Ok(rows)
}

/// A batched model needs a dynamic leading dimension on every declared input and output.
fn check_batch_dimension(signature: &rivet::Signature, max: usize) -> Result<(), StartError> {
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        match spec.shape.as_deref() {
            Some([Dim::Dynamic(_), ..]) | None => {}
            Some(_) => {
                return Err(StartError::Batching(format!(
                    "max_batch_size {max} needs a dynamic first dimension on every input and output, \
                     but {spec} has none: set max_batch_size = 0"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor {
        Tensor::zeros(DType::F32, shape).unwrap()
    }

    #[test]
    fn batch_rows_agree_and_stay_within_the_maximum() {
        let ok = vec![("a".to_owned(), t(&[3, 2])), ("b".to_owned(), t(&[3]))];
        assert_eq!(batch_rows(&ok, 8).unwrap(), 3);
        let mismatch = vec![("a".to_owned(), t(&[3, 2])), ("b".to_owned(), t(&[2]))];
        assert_eq!(
            batch_rows(&mismatch, 8).unwrap_err().to_string(),
            "inputs \"a\" and \"b\" have batch sizes 3 and 2: they must agree"
        );
        assert_eq!(
            batch_rows(&ok, 2).unwrap_err().to_string(),
            "batch size 3 is not between 1 and max_batch_size 2"
        );
        let scalar = vec![("s".to_owned(), t(&[]))];
        assert!(batch_rows(&scalar, 2).unwrap_err().to_string().starts_with("input \"s\" is a scalar"));
    }
}
