//! `rivet`: inspect, run and compare TorchScript and ONNX models on libtorch, ONNX Runtime and
//! Candle.

mod bench;
mod compare;
mod inputs;
mod load;
mod models;
#[cfg(feature = "serve")]
mod serve;
mod shadow;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rivet::{Backend, Model, Result, Tensor};

pub(crate) use load::LoadArgs;

use inputs::TensorArg;

#[derive(Parser)]
#[command(
    name = "rivet",
    version,
    about = "Run TorchScript and ONNX models on libtorch, ONNX Runtime or Candle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's format, which backends load it, and its signature; or, with --ops, the
    /// operators a backend implements.
    Inspect {
        /// The model file (.pt or .onnx).
        #[arg(required_unless_present = "ops")]
        model: Option<PathBuf>,
        /// List the operators the backend implements (domain, name, opsets, family) instead.
        #[arg(long, conflicts_with = "model")]
        ops: bool,
        /// The backend whose operators --ops lists.
        #[arg(long, short = 'b', default_value = "candle", requires = "ops")]
        backend: Backend,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run a model once and write each output as OUT/NAME.npy.
    Run {
        /// The model file (.pt or .onnx).
        model: PathBuf,
        /// An input: NAME=FILE.npy, or FILE.npy for the next input in signature order.
        #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy", required = true)]
        inputs: Vec<TensorArg>,
        /// Folder for the outputs (created if missing).
        #[arg(long, short = 'o', default_value = "out")]
        out: PathBuf,
        /// Which backend: auto, tch, ort, candle, or a registered backend's name.
        #[arg(long, short = 'b', default_value = "auto")]
        backend: Backend,
        /// Print what ran as JSON on stdout (backend, backends skipped and why, outputs).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run the same inputs through every backend that loads a model and compare outputs and
    /// latency. The .pt and .onnx twins of a network (same folder and name) count as one model;
    /// a folder stands for the models in it.
    Compare(compare::CompareArgs),
    /// Measure load time, first-inference time, latency percentiles, throughput, peak memory
    /// and output parity of every backend that loads a model, at each batch size and
    /// concurrency. Each measurement runs in its own child process.
    Bench(Box<bench::BenchArgs>),
    /// Serve a model repository over the Open Inference Protocol (KServe v2, Triton's
    /// protocol): HTTP/REST, gRPC and Prometheus metrics, until SIGTERM or Ctrl-C.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Fit preprocessing pipelines and transform tables into feature tensors (`rivet prep
    /// --help` for more). Runs `rivet-tabular`, beside this binary: Polars lives there.
    #[command(disable_help_flag = true)]
    Prep {
        /// Passed on to `rivet-tabular prep`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Score a table: stream it through a fitted pipeline and a model in batches and write
    /// the predictions (CSV or Parquet) beside an id column (`rivet predict --help` for more).
    /// Runs `rivet-tabular`, beside this binary.
    #[command(disable_help_flag = true)]
    Predict {
        /// Passed on to `rivet-tabular predict`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Shadow mode's captures: `rivet shadow report DIR` summarises a capture directory.
    #[command(subcommand)]
    Shadow(shadow::ShadowCommand),
    /// Internal: one measurement of `rivet bench`, a job as JSON on stdin, its result on stdout.
    #[command(hide = true)]
    BenchWorker,
}

fn main() -> ExitCode {
    // Runs (and bench workers, and the server's batches) reuse the memory the previous run freed.
    rivet::memory::keep_freed_memory();
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Inspect { load, .. } | Command::Run { load, .. } => load.threads,
        Command::Compare(args) => args.load.threads,
        Command::Predict { .. } | Command::Prep { .. } | Command::Shadow(_) => None,
        // The workers get RAYON_NUM_THREADS from `rivet bench`.
        Command::Bench(_) | Command::BenchWorker => None,
        #[cfg(feature = "serve")]
        Command::Serve(_) => None,
    };
    if let Some(n) = threads {
        // Before any thread pool exists; the process is still single-threaded.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = match cli.command {
        Command::Inspect { ops: true, backend, json, .. } => operators(&backend, json),
        Command::Inspect { model: Some(model), json, load, .. } => inspect(&model, json, &load),
        Command::Inspect { model: None, .. } => unreachable!("clap requires a model unless --ops is given"),
        Command::Run { model, inputs, out, backend, json, load } => {
            run(&model, &inputs, &out, backend, json, &load)
        }
        Command::Compare(args) => compare::compare(&args),
        Command::Shadow(command) => shadow::shadow(&command).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::bench(&args),
        Command::BenchWorker => return bench::worker::main(),
        Command::Prep { args } => return tabular("prep", &args),
        Command::Predict { args } => return tabular("predict", &args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => {
            // Raw rows need the pipelines, which live with Polars in rivet-tabular.
            if serve::holds_a_pipeline(&args) {
                let rest: Vec<std::ffi::OsString> =
                    std::env::args_os().skip_while(|a| a != "serve").skip(1).collect();
                return tabular("serve", &rest);
            }
            return serve::serve(&args, None);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `rivet-tabular COMMAND ARGS...` in place of this process. The tabular commands live in
/// a binary of their own so that `rivet` does not carry Polars (a third of its size and
/// start-up relocations) for the commands that do not use it.
fn tabular(command: &str, args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let here = std::env::current_exe().ok();
    let beside = here.as_ref().and_then(|p| p.parent()).map(|dir| dir.join("rivet-tabular"));
    let Some(program) = beside.filter(|p| p.is_file()) else {
        eprintln!(
            "error: `rivet {command}` runs rivet-tabular, which is not beside rivet{} (build it with \
             `cargo build -p rivet-cli`, whose default feature `prep` makes it)",
            here.as_ref()
                .and_then(|p| p.parent())
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default()
        );
        return ExitCode::FAILURE;
    };
    let error = std::process::Command::new(&program).arg(command).args(args).exec();
    eprintln!("error: cannot run {}: {error}", program.display());
    ExitCode::FAILURE
}

/// `rivet inspect --ops`: the operators `backend` implements, from its operator registry.
fn operators(backend: &Backend, json: bool) -> Result<ExitCode> {
    if *backend != Backend::CANDLE {
        return Err(rivet::Error::InvalidOption {
            backend: Some(backend.to_string()),
            key: "backend".into(),
            message: format!(
                "only the candle backend lists its operators; {backend} runs what its own library implements"
            ),
        });
    }
    let ops = rivet::candle::operators()?;
    if json {
        let value: Vec<_> = ops
            .iter()
            .map(|o| serde_json::json!({"domain": o.domain, "name": o.name, "opsets": o.opsets, "family": o.family}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let width = ops.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in &ops {
        println!("{:<14} {:<width$}  {:<6} {}", o.family, o.name, o.opsets, o.domain);
    }
    println!("{} operators", ops.len());
    Ok(ExitCode::SUCCESS)
}

fn inspect(path: &Path, json: bool, load: &LoadArgs) -> Result<ExitCode> {
    let format = rivet::format::detect_format(path, "auto")?;
    let auto = load.options(&Backend::AUTO)?;
    let mut backends = Vec::new();
    let mut signature = None;
    for kind in rivet::backends_for(format, &auto) {
        match rivet::load(path, &load.options(&kind)?) {
            Ok(model) => {
                signature.get_or_insert_with(|| model.signature().clone());
                backends.push((kind, None));
            }
            Err(err) => backends.push((kind, Some(err.to_string()))),
        }
    }
    if json {
        let value = serde_json::json!({
            "path": path,
            "format": format.to_string(),
            "backends": backends.iter().map(|(b, e)| serde_json::json!({
                "backend": b.name(), "loads": e.is_none(), "error": e,
            })).collect::<Vec<_>>(),
            "signature": signature,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("model:   {}", path.display());
    println!("format:  {format}");
    for (kind, error) in &backends {
        match error {
            None => println!("backend: {kind}: loads"),
            Some(e) => println!("backend: {kind}: cannot load ({e})"),
        }
    }
    match signature {
        Some(sig) => {
            for spec in &sig.inputs {
                println!("input:   {spec}");
            }
            for spec in &sig.outputs {
                println!("output:  {spec}");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Err(rivet::Error::NoBackend {
            path: path.to_path_buf(),
            attempts: backends
                .into_iter()
                .filter_map(|(b, e)| e.map(|e| (b.name().to_owned(), rivet::Error::unsupported(b.name(), e))))
                .collect(),
        }),
    }
}

/// Runs `model` on tensors given by name or position (all one way, as the arguments give them).
pub(crate) fn run_model(model: &dyn Model, inputs: &[(Option<String>, Tensor)]) -> Result<rivet::Outputs> {
    if inputs.iter().all(|(n, _)| n.is_some()) {
        let named: Vec<(&str, &Tensor)> =
            inputs.iter().map(|(n, t)| (n.as_deref().unwrap_or_default(), t)).collect();
        model.run_named(&named)
    } else if inputs.iter().all(|(n, _)| n.is_none()) {
        let positional: Vec<&Tensor> = inputs.iter().map(|(_, t)| t).collect();
        model.run(&positional)
    } else {
        Err(rivet::Error::InvalidInput {
            input: None,
            message: "give every input as NAME=FILE.npy, or every input as FILE.npy in signature order"
                .into(),
        })
    }
}

/// A file name for an output: its name with path separators and odd characters replaced.
pub(crate) fn output_file_name(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("output_{cleaned}")
    } else {
        cleaned
    }
}

fn run(
    path: &Path,
    args: &[TensorArg],
    out: &Path,
    backend: Backend,
    json: bool,
    load: &LoadArgs,
) -> Result<ExitCode> {
    let inputs = inputs::read_args(args)?;
    let loaded = rivet::load_explained(path, &load.options(&backend)?)?;
    let outputs = run_model(&*loaded.model, &inputs)?;
    // Which backend ran, and why any tried before it did not, on stderr (after a run that failed, the error line says it all).
    eprintln!("backend: {}", loaded.model.backend());
    for (name, err) in &loaded.skipped {
        eprintln!(
            "  skipped {name}: {}",
            err.to_string().strip_prefix(&format!("{name}: ")).unwrap_or(&err.to_string())
        );
    }
    std::fs::create_dir_all(out).map_err(|e| rivet::Error::file(out, e))?;
    let mut written = Vec::new();
    for (name, tensor) in outputs.iter() {
        let file = out.join(format!("{}.npy", output_file_name(name)));
        rivet::npy::write_npy(&file, tensor)?;
        if !json {
            println!("{name}: {}{:?} -> {}", tensor.dtype(), tensor.shape(), file.display());
        }
        written.push(serde_json::json!({
            "name": name, "dtype": tensor.dtype().name(), "shape": tensor.shape(), "file": file,
        }));
    }
    if json {
        let skipped: Vec<serde_json::Value> = loaded
            .skipped
            .iter()
            .map(|(name, err)| serde_json::json!({"backend": name, "kind": err.kind(), "error": err.to_string()}))
            .collect();
        let report = serde_json::json!({
            "model": path, "backend": loaded.model.backend(), "skipped": skipped, "outputs": written,
        });
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| rivet::Error::file(out, e))?);
    }
    Ok(ExitCode::SUCCESS)
}
