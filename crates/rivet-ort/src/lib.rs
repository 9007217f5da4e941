//! Rivet's ONNX Runtime backend, through `ort` with the library loaded at run time.
//!
//! Finding libonnxruntime: `ORT_DYLIB_PATH` at run time wins; otherwise the path baked in at
//! build time from `RIVET_ORT_DYLIB_PATH` (set by the project's bootstrap) is used.
//!
//! Concurrency: `ort::Session::run` needs exclusive access, so a model keeps a pool of sessions
//! (like Triton's instance_group) and `run` takes a free one. By default (`instances=auto`) the
//! pool starts with one session and adds another only when a run finds every session busy, up
//! to the number of CPU cores: a one-shot or single-threaded user pays for one session, a
//! threaded service is not serialised by a default it never chose. `instances=N` creates N
//! sessions at load and never more (runs beyond N wait). Thread settings are per session.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crossbeam_utils::atomic::AtomicCell;

use smallvec::SmallVec;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use rivet_core::format::{expect_cpu, expect_format};
use rivet_core::{
    with_element_type, Backend, DType, Dim, Error, InferenceBackend, LoadOptions, Model, ModelFormat,
    OptionInfo, Result, Signature, Tensor, TensorSpec, TensorView,
};

mod raw;

use raw::RunPlan;

const NAME: &str = "ort";

/// The options the ORT backend accepts (`LoadOptions::set_option(&Backend::ORT, ...)`).
pub const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        key: "optimization",
        help: "graph optimization level: disable, basic, extended or all (default all)",
    },
    OptionInfo {
        key: "instances",
        help: "sessions for concurrent runs, like Triton's instance count: N made at load, or auto \
               (default): one at load, another whenever every session is busy, up to the CPU count",
    },
    OptionInfo {
        key: "arena",
        help: "true (ONNX Runtime's default) or false: the CPU memory arena, which keeps freed buffers for reuse",
    },
];

/// ONNX Runtime's graph optimization levels (the `optimization` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOptimization {
    /// No graph rewrites.
    Disable,
    /// Constant folding and redundant node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, layout optimizations included (ONNX Runtime's default).
    #[default]
    All,
}

impl FromStr for GraphOptimization {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "disable" | "none" | "0" => Ok(GraphOptimization::Disable),
            "basic" | "1" => Ok(GraphOptimization::Basic),
            "extended" | "2" => Ok(GraphOptimization::Extended),
            "all" | "3" | "99" => Ok(GraphOptimization::All),
            _ => Err(()),
        }
    }
}

/// How many sessions a model keeps (the `instances` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instances {
    /// One at load, more on demand up to this many.
    Auto(usize),
    /// Exactly this many, made at load.
    Fixed(usize),
}

/// The ORT options of one load, parsed and checked.
#[derive(Debug, Clone, Copy)]
struct OrtOptions {
    optimization: GraphOptimization,
    instances: Instances,
    intra_op_threads: Option<usize>,
    inter_op_threads: Option<usize>,
    arena: bool,
}

impl OrtOptions {
    fn parse(options: &LoadOptions) -> Result<OrtOptions> {
        let own = options.options_for(NAME);
        own.check_known(OPTIONS)?;
        let optimization = own.parse("optimization", "disable, basic, extended or all")?.unwrap_or_default();
        let instances = match own.get("instances") {
            None | Some("auto") => {
                Instances::Auto(std::thread::available_parallelism().map_or(1, |n| n.get()))
            }
            Some(_) => match own.parse::<usize>("instances", "auto or a whole number of at least 1")? {
                Some(n) if n > 0 => Instances::Fixed(n),
                _ => {
                    return Err(Error::InvalidOption {
                        backend: Some(NAME.into()),
                        key: "instances".into(),
                        message:
                            "ort: option instances = \"0\": expected auto or a whole number of at least 1"
                                .into(),
                    })
                }
            },
        };
        let arena = own.parse::<bool>("arena", "true or false")?.unwrap_or(true);
        Ok(OrtOptions {
            arena,
            optimization,
            instances,
            intra_op_threads: options.intra_op_threads,
            inter_op_threads: options.inter_op_threads,
        })
    }
}

/// Where libonnxruntime is: `ORT_DYLIB_PATH`, else the path baked in at build time.
pub fn dylib_path() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("RIVET_ORT_DYLIB_PATH").map(PathBuf::from))
}

/// Why ONNX Runtime is unavailable to this process (found once, on first use).
#[derive(Debug)]
enum Unavailable {
    /// No path was given at build or run time.
    NoPath,
    /// Nothing is at the path.
    NotFound(PathBuf),
    /// The library at the path did not load.
    Load(PathBuf, ort::LoadDynamicError),
    /// Its environment could not be made.
    Start(ort::Error),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoPath => {
                f.write_str("cannot find libonnxruntime: set ORT_DYLIB_PATH to libonnxruntime.so")
            }
            Unavailable::NotFound(path) => {
                write!(
                    f,
                    "libonnxruntime not found at {} (set ORT_DYLIB_PATH to the library)",
                    path.display()
                )
            }
            Unavailable::Load(path, e) => write!(f, "cannot load ONNX Runtime from {}: {e}", path.display()),
            Unavailable::Start(e) => write!(f, "cannot start ONNX Runtime: {e}"),
        }
    }
}

/// The process-wide ONNX Runtime environment, loading the library on first use; the error says
/// why ONNX Runtime is unavailable.
fn shared_environment() -> std::result::Result<&'static Environment, &'static Unavailable> {
    static ENV: OnceLock<std::result::Result<Environment, Unavailable>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = dylib_path().ok_or(Unavailable::NoPath)?;
        if !path.is_file() {
            return Err(Unavailable::NotFound(path));
        }
        no_telemetry_thread();
        let builder = ort::init_from(&path).map_err(|e| Unavailable::Load(path.clone(), e))?;
        builder.with_name("rivet").with_telemetry(false).build().map_err(Unavailable::Start)
    })
    .as_ref()
}

/// Keeps ONNX Runtime from starting its telemetry thread: unless `ORT_DISABLE_TELEMETRY` is
/// already set, sets it to `1` before the environment is created.
///
/// Microsoft's Linux builds (the PyPI wheel among them) start a thread for telemetry (the 1DS
/// SDK) inside `CreateEnv`, whatever is asked afterwards (`DisableTelemetryEvents` does not stop
/// it). ONNX Runtime's own static destructors join that thread at `exit()` after freeing memory
/// the thread reads, so a plain `exit()` raced in about 1 memcheck run in 6. Without the thread
/// there is no race, and a library should not report on its host's models anyway. Set
/// `ORT_DISABLE_TELEMETRY=0` to keep ONNX Runtime's default.
fn no_telemetry_thread() {
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        // SAFETY: changing the environment races only with another thread reading it through
        // libc at this instant. This runs once per process, when the first ONNX model loads,
        // and ONNX Runtime, which reads the variable next, is not loaded yet.
        unsafe { std::env::set_var("ORT_DISABLE_TELEMETRY", "1") };
    }
}

/// The process-wide ONNX Runtime environment (for direct `ort` calls next to Rivet's).
pub fn environment() -> Result<&'static Environment> {
    shared_environment().map_err(|e| Error::unsupported(NAME, format!("ONNX Runtime: {e}")))
}

/// The ONNX Runtime backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct OrtBackend;

impl OrtBackend {
    /// The backend.
    pub fn new() -> Self {
        OrtBackend
    }
}

/// Maps an ONNX element type to a Rivet dtype, or `None` when Rivet has none.
pub fn dtype_of(ty: TensorElementType) -> Option<DType> {
    Some(match ty {
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Bfloat16 => DType::BF16,
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Bool => DType::Bool,
        _ => return None,
    })
}

fn spec_of(name: &str, ty: &ValueType, path: &Path) -> Result<TensorSpec> {
    let ValueType::Tensor { ty, shape, dimension_symbols } = ty else {
        return Err(Error::unsupported(
            NAME,
            format!("{}: \"{name}\" is a {ty:?}; Rivet handles tensors only", path.display()),
        ));
    };
    let dtype = dtype_of(*ty).ok_or_else(|| {
        Error::unsupported(NAME, format!("{}: \"{name}\" has element type {ty:?}", path.display()))
    })?;
    let dims = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d >= 0 {
                Dim::Fixed(d as usize)
            } else {
                let symbol = dimension_symbols.get(i).filter(|s| !s.is_empty()).cloned();
                Dim::Dynamic(symbol)
            }
        })
        .collect();
    Ok(TensorSpec::new(name, dtype, dims))
}

fn optimization_level(level: GraphOptimization) -> GraphOptimizationLevel {
    match level {
        GraphOptimization::Disable => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::All => GraphOptimizationLevel::All,
    }
}

fn new_session(path: &Path, options: &OrtOptions) -> Result<Session> {
    let fail = |e: ort::Error| Error::load(NAME, path, &e).with_source(e);
    let environment = shared_environment().map_err(|e| Error::load(NAME, path, e))?;
    let mut builder = Session::builder(environment)
        .map_err(fail)?
        .with_optimization_level(optimization_level(options.optimization))
        .map_err(|e| fail(e.into()))?;
    if !options.arena {
        let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
        builder = builder.with_execution_providers([cpu]).map_err(|e| fail(e.into()))?;
    }
    if let Some(n) = options.intra_op_threads {
        builder = builder.with_intra_threads(n).map_err(|e| fail(e.into()))?;
    }
    if let Some(n) = options.inter_op_threads {
        builder = builder.with_parallel_execution(true).map_err(|e| fail(e.into()))?;
        builder = builder.with_inter_threads(n).map_err(|e| fail(e.into()))?;
    }
    builder.commit_from_file(path).map_err(fail)
}

impl InferenceBackend for OrtBackend {
    fn name(&self) -> Backend {
        Backend::ORT
    }

    fn formats(&self) -> &[ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn options(&self) -> &[OptionInfo] {
        OPTIONS
    }

    fn load(&self, path: &Path, load_options: &LoadOptions) -> Result<Arc<dyn Model>> {
        Ok(Arc::new(self.load_model(path, load_options)?))
    }
}

impl OrtBackend {
    /// [`InferenceBackend::load`], returning the concrete model (for [`OrtModel::sessions`]
    /// and direct session access).
    pub fn load_model(&self, path: &Path, load_options: &LoadOptions) -> Result<OrtModel> {
        let options = &OrtOptions::parse(load_options)?;
        expect_format(path, NAME, ModelFormat::Onnx)?;
        expect_cpu(load_options.device, NAME, "ONNX Runtime")?;
        let first = new_session(path, options)?;
        let signature = signature_of(&first, path)?;
        let mut sessions = vec![first];
        let growth = match options.instances {
            Instances::Fixed(n) => {
                for _ in 1..n {
                    sessions.push(new_session(path, options)?);
                }
                None
            }
            Instances::Auto(max) => Some(Growth {
                path: path.to_path_buf(),
                options: *options,
                max,
                signature: signature.clone(),
            }),
        };
        let names = signature.output_names(signature.outputs.len()).into();
        let plan = RunPlan::new(
            signature.inputs.iter().map(|s| s.name.as_str()),
            signature.outputs.iter().map(|s| s.name.as_str()),
        )?;
        Ok(OrtModel { pool: SessionPool::new(sessions, growth), signature, names, plan })
    }
}

/// The signature a session reports.
fn signature_of(session: &Session, path: &Path) -> Result<Signature> {
    Ok(Signature {
        inputs: session.inputs().iter().map(|o| spec_of(o.name(), o.dtype(), path)).collect::<Result<_>>()?,
        outputs: session
            .outputs()
            .iter()
            .map(|o| spec_of(o.name(), o.dtype(), path))
            .collect::<Result<_>>()?,
    })
}

/// How an `instances=auto` pool makes another session.
struct Growth {
    path: PathBuf,
    options: OrtOptions,
    /// The most sessions the pool holds.
    max: usize,
    /// The first session's signature, which every later one must have.
    signature: Signature,
}

impl Growth {
    /// Another session for the model, refused when the file no longer gives the same model.
    fn session(&self) -> Result<Session> {
        let session = new_session(&self.path, &self.options)?;
        if signature_of(&session, &self.path)? != self.signature {
            return Err(Error::load(NAME, &self.path, "the file changed since the model was loaded"));
        }
        Ok(session)
    }
}

/// Sessions handed out one caller at a time; an `instances=auto` pool grows while every
/// session is busy.
///
/// The session a run returns goes to `hot`, where the next run takes it with one atomic swap
/// and no lock: a lone caller, the common case, never touches the mutex. Only when `hot` is
/// taken, or a caller waits, do sessions go through the locked free list.
struct SessionPool {
    /// A free session taken without the lock (a pointer-sized cell: one atomic swap).
    hot: AtomicCell<Option<Box<Session>>>,
    /// Callers blocked in `take`, read without the lock by returns (see `give`).
    waiting: AtomicUsize,
    state: Mutex<PoolState>,
    returned: Condvar,
    growth: Option<Growth>,
}

// `hot` is a swap of one word, not a lock.
const _: () = assert!(AtomicCell::<Option<Box<Session>>>::is_lock_free());

struct PoolState {
    /// Boxed, unlike clippy's advice, so that moving one between here, `hot` and a lease is a
    /// pointer copy with no allocation.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Session>>,
    /// Sessions in the pool, free or leased, counting one being made.
    total: usize,
    /// Set when making a session failed: the pool stops growing and callers wait instead.
    grow_failed: bool,
}

impl SessionPool {
    fn new(sessions: Vec<Session>, growth: Option<Growth>) -> Self {
        let total = sessions.len();
        SessionPool {
            hot: AtomicCell::new(None),
            waiting: AtomicUsize::new(0),
            state: Mutex::new(PoolState {
                free: sessions.into_iter().map(Box::new).collect(),
                total,
                grow_failed: false,
            }),
            returned: Condvar::new(),
            growth,
        }
    }

    /// The session in `hot`, if there is one.
    fn take_hot(&self) -> Option<Box<Session>> {
        self.hot.take()
    }

    /// A free session, a new one when every session is busy and the pool may grow, or the
    /// next one returned.
    fn take(&self) -> Box<Session> {
        if let Some(session) = self.take_hot() {
            return session;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(session) = self.take_hot().or_else(|| state.free.pop()) {
                return session;
            }
            if let Some(growth) = self.growth.as_ref().filter(|g| !state.grow_failed && state.total < g.max) {
                state.total += 1;
                drop(state);
                // Made outside the lock: other callers keep taking and returning sessions.
                match growth.session() {
                    Ok(session) => return Box::new(session),
                    Err(_) => {
                        // Not fatal: the sessions the pool has keep serving this caller too.
                        state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.total -= 1;
                        state.grow_failed = true;
                        continue;
                    }
                }
            }
            // Announce the wait, then look at `hot` once more: a return that did not see us
            // may have put its session there (see `give`).
            self.waiting.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(session) = self.take_hot() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return session;
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Hands a session back: to `hot` when no one waits, else to the free list, waking a
    /// waiter. A session that `hot` held already moves to the free list.
    fn give(&self, session: Box<Session>) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return self.give_locked(session);
        }
        if let Some(displaced) = self.hot.swap(Some(session)) {
            return self.give_locked(displaced);
        }
        // A caller that announced its wait after the check above either finds the session in
        // `hot` on its second look or is waiting now: wake it. (Both sides put a SeqCst fence
        // between their write and their read: either its announcement comes before this load,
        // or our swap comes before its look.)
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.returned.notify_all();
        }
    }

    fn give_locked(&self, session: Box<Session>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.free.push(session);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_one();
        }
    }

    /// Runs `f` with a session of its own, waiting until one is free.
    fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let session = self.take();
        // The guard hands the session back even if `f` panics.
        let mut guard = Lease { pool: self, session: Some(session) };
        f(guard.session.as_mut().expect("a leased session is present until drop"))
    }

    /// Sessions the pool holds now.
    fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<Box<Session>>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give(session);
        }
    }
}

/// An ONNX model loaded by ONNX Runtime.
pub struct OrtModel {
    pool: SessionPool,
    signature: Signature,
    /// The output names, shared by every run's `Outputs`.
    names: Arc<[String]>,
    /// What every run hands ONNX Runtime unchanged.
    plan: RunPlan,
}

impl OrtModel {
    /// Runs `f` with one of the model's sessions, for direct calls (benchmarks compare against
    /// it).
    pub fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        self.pool.with_session(f)
    }

    /// How many sessions the model holds now (`instances=auto` adds them under concurrency).
    pub fn sessions(&self) -> usize {
        self.pool.len()
    }
}

/// Wraps a Rivet view as an ONNX Runtime tensor without copying.
pub fn to_ort<'a>(view: &TensorView<'a>) -> Result<SessionInputValue<'a>> {
    let shape: &[usize] = view.shape();
    with_element_type!(view.dtype(), T => {
        let data: &'a [T] = view.as_slice::<T>()?;
        TensorRef::<T>::from_array_view((shape, data))
            .map(SessionInputValue::from)
            .map_err(|e| Error::backend(NAME, e))
    })
}

/// The Rivet dtype of output `name`, or an error when it is no tensor or of a type Rivet lacks.
fn output_dtype(name: &str, value: &DynValue) -> Result<DType> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(Error::unsupported(NAME, format!("output \"{name}\" is not a tensor")));
    };
    dtype_of(*ty)
        .ok_or_else(|| Error::unsupported(NAME, format!("output \"{name}\" has element type {ty:?}")))
}

/// Turns an ONNX Runtime output into a Rivet tensor without copying it: the tensor takes the
/// value over and releases it when the last tensor sharing it is dropped. `inputs` are the run's
/// inputs: an output that lies in one of them (ONNX Runtime does not promise otherwise) is copied,
/// as the caller's memory is not Rivet's to keep.
///
/// The value's buffer does not depend on the session that made it: ONNX Runtime gives every
/// output a buffer of its own (it copies outputs that are initializers, constants or inputs),
/// and the buffer holds a reference to its allocator. So an output outlives its model
/// (`tests/outputs.rs` checks all three cases, under valgrind in `make test-c`'s memcheck too).
pub fn take_output(name: &str, value: DynValue, inputs: &[TensorView<'_>]) -> Result<Tensor> {
    let dtype = output_dtype(name, &value)?;
    let (shape, data, len) = with_element_type!(dtype, T => {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| Error::backend(NAME, e))?;
        let mut dims = SmallVec::<[usize; 4]>::new();
        for &d in shape.iter() {
            dims.push(d as usize);
        }
        (dims, data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
    });
    // SAFETY: `data` is the value's `len` bytes, alive while it is; an output's buffer is its
    // own (see above).
    unsafe { hand_over(dtype, &shape, data, len, value, inputs) }
}

/// A tensor over an output's `len` bytes at `data`, which `owner` holds: the tensor takes
/// `owner` over, unless the bytes lie in one of the run's `inputs`, where they are copied (and
/// `owner` dropped).
///
/// # Safety
/// `data` must be `len` bytes that stay valid and readable from any thread while `owner`
/// lives, that ONNX Runtime made for this output and uses for nothing else (NULL only when
/// `len` is 0).
unsafe fn hand_over<O: Send + Sync + 'static>(
    dtype: DType,
    shape: &[usize],
    data: *const u8,
    len: usize,
    owner: O,
    inputs: &[TensorView<'_>],
) -> Result<Tensor> {
    let start = data as usize;
    let overlaps = |view: &TensorView<'_>| {
        let bytes = view.as_bytes();
        let (from, to) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
        len > 0 && start < to && from < start + len
    };
    if inputs.iter().any(overlaps) {
        // SAFETY: `data` is `len` readable bytes while `owner` lives (the caller's promise).
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        return Tensor::from_bytes(dtype, shape, bytes);
    }
    // SAFETY: the caller's promise, with no input sharing the bytes (checked above).
    unsafe { Tensor::from_handed_over(dtype, shape, data, len, owner) }
}

/// Copies an ONNX Runtime output into a Rivet tensor.
pub fn from_ort(name: &str, value: &DynValue) -> Result<Tensor> {
    let dtype = output_dtype(name, value)?;
    with_element_type!(dtype, T => {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| Error::backend(NAME, e))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        Tensor::from_shape_and_slice(shape, data)
    })
}

impl Model for OrtModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        Backend::ORT
    }

    fn output_names(&self, count: usize) -> Arc<[String]> {
        if count == self.names.len() {
            Arc::clone(&self.names)
        } else {
            self.signature.output_names(count).into()
        }
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        // Inputs in signature order, which is the session's: no lookups by name. The C API
        // directly (see `raw`): this is the whole of Rivet's cost per run.
        self.pool.with_session(|session| self.plan.run(session, inputs))
    }
}
