//! Rivet's libtorch backend: TorchScript models through `tch`.
//!
//! Concurrency: one loaded [`TchModel`] may run from many threads at once (libtorch's
//! `Module::forward` is re-entrant for inference). Thread settings are process-wide in libtorch:
//! `intra_op_threads` calls `at::set_num_threads` for the whole process, and `inter_op_threads`
//! can be set only once, before any parallel work.

#![warn(missing_docs)]

/// The archive reader, now in `rivet_core::torchscript` (pure Rust, so it can be fuzzed and
/// used without libtorch).
pub use rivet_core::torchscript as archive;
mod executor;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rivet_core::format::expect_format;
use rivet_core::{
    Backend, DType, Device, Error, InferenceBackend, LoadOptions, Model, ModelFormat, OptionInfo, Result,
    Signature, Tensor, TensorView,
};
use tch::{CModule, IValue, Kind};

use rivet_core::torchscript::torchscript_signature;

const NAME: &str = "tch";

/// The options the tch backend accepts (`LoadOptions::set_option(&Backend::TCH, ...)`).
pub const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        key: "spec",
        help: "a spec file giving dtypes, shapes and output names (default: NAME.spec.json beside the model)",
    },
    OptionInfo {
        key: "executor",
        help: "thread (default): libtorch calls run on Rivet's executor thread(s), so OpenMP keeps one \
               team each and any calling thread gets the same speed; caller: on the calling thread",
    },
    OptionInfo {
        key: "retain_memory",
        help: "true (default) or false: keep freed memory in the process (glibc: mmap threshold 32 MiB, \
               trim threshold 1 GiB, process-wide, from the first such load) instead of returning large \
               activations to the kernel and faulting them in again on every run",
    },
    OptionInfo {
        key: "executors",
        help: "executor threads serving concurrent runs (default 1; the process keeps the most any \
               load asked for); with N, give each intra_op_threads = cores / N",
    },
];

/// Where a model's libtorch calls run (the `executor` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// On the process's libtorch executor threads.
    Executor,
    /// On whichever thread calls.
    Caller,
}

impl Placement {
    fn run<R: Send>(
        self,
        expected: std::time::Duration,
        spare_core: bool,
        f: impl FnOnce() -> R + Send,
    ) -> R {
        match self {
            Placement::Executor => executor::run(expected, spare_core, f),
            Placement::Caller => f(),
        }
    }
}

/// The libtorch backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct TchBackend;

impl TchBackend {
    /// The backend.
    pub fn new() -> Self {
        TchBackend
    }
}

/// Maps a Rivet dtype to a libtorch kind.
pub fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// Maps a libtorch kind to a Rivet dtype, or an `Unsupported` error naming the kind.
pub fn dtype_of(kind: Kind) -> Result<DType> {
    Ok(match kind {
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        Kind::Int8 => DType::I8,
        Kind::Int16 => DType::I16,
        Kind::Int => DType::I32,
        Kind::Int64 => DType::I64,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::Bool,
        other => return Err(Error::unsupported(NAME, format!("output dtype {other:?}"))),
    })
}

fn tch_device(device: Device) -> Result<tch::Device> {
    match device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda(i) => {
            let count = tch::Cuda::device_count();
            if (i as i64) < count {
                Ok(tch::Device::Cuda(i))
            } else {
                Err(Error::unsupported(
                    NAME,
                    format!("device cuda:{i}: libtorch sees {count} CUDA device(s)"),
                ))
            }
        }
    }
}

/// libtorch's own message for a `tch` error: the first line of the C++ exception's text, without
/// tch's "Internal torch error:" prefix or the C++ backtrace that follows.
pub fn torch_message(err: &tch::TchError) -> String {
    match err {
        tch::TchError::Torch(message) => rivet_core::one_line(message),
        other => rivet_core::one_line(other),
    }
}

/// Keeps freed memory in the process. libtorch allocates every activation with malloc; glibc's
/// defaults hand large blocks back to the kernel when they are freed (munmap, or madvise when a
/// thread arena's top shrinks), so each run faults its activations in again, page by page: at
/// batch 64 on the bundled CNN that was about half of the run. A fixed mmap threshold of 32 MiB
/// and a trim threshold of 1 GiB keep those blocks for the next run. Process-wide, set once.
fn retain_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation parameters; any value is valid.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    });
}

/// Applies libtorch's process-wide thread settings.
fn apply_threads(options: &LoadOptions) -> Result<()> {
    if let Some(n) = options.intra_op_threads {
        let n = i32::try_from(n.max(1)).unwrap_or(i32::MAX);
        if tch::get_num_threads() != n {
            rivet_core::panics::catch_quietly(|| tch::set_num_threads(n)).map_err(|_| {
                Error::unsupported(NAME, format!("intra_op_threads = {n}: libtorch refused it"))
            })?;
        }
    }
    if let Some(n) = options.inter_op_threads {
        let n = i32::try_from(n.max(1)).unwrap_or(i32::MAX);
        if tch::get_num_interop_threads() != n {
            rivet_core::panics::catch_quietly(|| tch::set_num_interop_threads(n)).map_err(|_| {
                Error::unsupported(
                    NAME,
                    format!(
                        "inter_op_threads = {n}: libtorch fixes it process-wide at {} once parallel \
                         work has started",
                        tch::get_num_interop_threads()
                    ),
                )
            })?;
        }
    }
    Ok(())
}

impl InferenceBackend for TchBackend {
    fn name(&self) -> Backend {
        Backend::TCH
    }

    fn formats(&self) -> &[ModelFormat] {
        &[ModelFormat::TorchScript]
    }

    fn options(&self) -> &[OptionInfo] {
        OPTIONS
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let own = options.options_for(NAME);
        own.check_known(OPTIONS)?;
        let spec = own.get("spec").map(PathBuf::from);
        let placement = match own.get("executor") {
            None | Some("thread") => Placement::Executor,
            Some("caller") => Placement::Caller,
            Some(other) => {
                return Err(Error::InvalidOption {
                    backend: Some(NAME.into()),
                    key: "executor".into(),
                    message: format!("{NAME}: option executor = \"{other}\": expected thread or caller"),
                })
            }
        };
        let executors = own.parse::<usize>("executors", "a whole number of at least 1")?.unwrap_or(1);
        if executors == 0 {
            return Err(Error::InvalidOption {
                backend: Some(NAME.into()),
                key: "executors".into(),
                message: format!("{NAME}: option executors = \"0\": expected a whole number of at least 1"),
            });
        }
        let retain_memory = own.parse::<bool>("retain_memory", "true or false")?.unwrap_or(true);
        expect_format(path, NAME, ModelFormat::TorchScript)?;
        let signature = torchscript_signature(path, spec.as_deref())?;
        if retain_memory {
            retain_freed_memory();
        }
        if placement == Placement::Executor {
            executor::ensure_threads(executors)
                .map_err(|e| Error::load(NAME, path, format!("cannot start an executor thread: {e}")))?;
        }
        let module = placement.run(executor::SHORT_RUN, false, || -> Result<(CModule, tch::Device, bool)> {
            let device = tch_device(options.device)?;
            apply_threads(options)?;
            // tch hands libtorch the path as UTF-8; a Linux path need not be, so such a file is
            // read here and handed over as a stream.
            let loaded = if path.to_str().is_some() {
                CModule::load_on_device(path, device)
            } else {
                let mut file = std::fs::File::open(path).map_err(|e| Error::load(NAME, path, &e))?;
                CModule::load_data_on_device(&mut file, device)
            };
            let mut module = loaded.map_err(|e| Error::load(NAME, path, torch_message(&e)))?;
            module.f_set_eval().map_err(|e| Error::load(NAME, path, torch_message(&e)))?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let spare_core = usize::try_from(tch::get_num_threads()).unwrap_or(usize::MAX) < cores;
            Ok((module, device, spare_core))
        });
        let (module, device, spare_core) = module?;
        let last_run_ns = AtomicU64::new(0);
        Ok(Arc::new(TchModel { module, signature, device, placement, last_run_ns, spare_core }))
    }
}

/// A TorchScript module loaded by libtorch.
pub struct TchModel {
    module: CModule,
    signature: Signature,
    device: tch::Device,
    placement: Placement,
    /// How long the last run took, which tells a caller how to wait for the next.
    last_run_ns: AtomicU64,
    /// Whether libtorch's intra-op threads leave a core free (measured at load).
    spare_core: bool,
}

impl TchModel {
    /// The underlying `tch` module, for direct calls (benchmarks compare against it).
    pub fn module(&self) -> &CModule {
        &self.module
    }
}

/// Copies a Rivet view into a libtorch tensor on `device`.
pub fn to_tch(view: &TensorView<'_>, device: tch::Device) -> Result<tch::Tensor> {
    let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let tensor = tch::Tensor::f_from_data_size(view.as_bytes(), &size, kind_of(view.dtype()))
        .map_err(|e| Error::backend(NAME, torch_message(&e)))?;
    if device == tch::Device::Cpu {
        Ok(tensor)
    } else {
        tensor.f_to_device(device).map_err(|e| Error::backend(NAME, torch_message(&e)))
    }
}

/// Copies a libtorch tensor (any device, any layout) into a Rivet tensor.
pub fn from_tch(tensor: &tch::Tensor) -> Result<Tensor> {
    let err = |e: tch::TchError| Error::backend(NAME, torch_message(&e));
    let dtype = dtype_of(tensor.f_kind().map_err(err)?)?;
    // Copy to the CPU and make contiguous only when needed: each is a new libtorch handle.
    let moved;
    let mut tensor = tensor;
    if tensor.device() != tch::Device::Cpu {
        moved = tensor.f_to_device(tch::Device::Cpu).map_err(err)?;
        tensor = &moved;
    }
    let contiguous;
    if !tensor.is_contiguous() {
        contiguous = tensor.f_contiguous().map_err(err)?;
        tensor = &contiguous;
    }
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let numel = rivet_core::element_count(&shape)?;
    Tensor::from_fn_bytes(dtype, &shape, |bytes| {
        if numel > 0 {
            tensor.f_copy_data_u8(bytes, numel).map_err(err)?;
        }
        Ok(())
    })
}

fn collect_outputs(value: IValue, out: &mut Vec<Tensor>) -> Result<()> {
    match value {
        IValue::Tensor(t) => out.push(from_tch(&t)?),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            for item in items {
                collect_outputs(item, out)?;
            }
        }
        IValue::TensorList(items) => {
            for t in items {
                out.push(from_tch(&t)?);
            }
        }
        other => {
            let name = format!("{other:?}");
            let name = name.split('(').next().unwrap_or("a non-tensor value");
            return Err(Error::backend(
                NAME,
                format!("forward returned {name}; Rivet expects a tensor or a tuple/list of tensors"),
            ));
        }
    }
    Ok(())
}

impl Model for TchModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        Backend::TCH
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let expected = std::time::Duration::from_nanos(self.last_run_ns.load(Ordering::Relaxed));
        self.placement.run(expected, self.spare_core, || {
            let started = std::time::Instant::now();
            let result = self.execute_here(inputs);
            let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.last_run_ns.store(took, Ordering::Relaxed);
            result
        })
    }
}

impl TchModel {
    /// Runs on the calling thread: conversions in, forward, conversions out.
    fn execute_here(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        let _no_grad = tch::no_grad_guard();
        let args =
            inputs.iter().map(|v| to_tch(v, self.device).map(IValue::Tensor)).collect::<Result<Vec<_>>>()?;
        // tch reports libtorch exceptions as errors; the catch is for panics in its conversions.
        let result = rivet_core::panics::catch_quietly(|| self.module.forward_is(&args))
            .map_err(|_| Error::backend(NAME, "tch panicked while running forward"))?
            .map_err(|e| Error::backend(NAME, torch_message(&e)))?;
        let mut outputs = Vec::new();
        collect_outputs(result, &mut outputs)?;
        Ok(outputs)
    }
}
