//! `rivet bench`'s command line: the arguments, their checks, and the measurement plan.

use std::path::PathBuf;

use clap::Args;
use rivet::{Backend, Error, Result};

use super::plot;
use super::runner::{Plan, Stop};
use crate::inputs::TensorArg;
use crate::LoadArgs;

/// Arguments of `rivet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model files (.pt, .onnx) or folders holding them; the .pt and .onnx twins of a network
    /// (same folder and name) count as one model.
    #[arg(required = true)]
    pub(super) models: Vec<PathBuf>,
    /// Backends, comma-separated: all, tch, ort, candle.
    #[arg(long = "backend", short = 'b', value_delimiter = ',', default_value = "all")]
    pub(super) backends: Vec<String>,
    /// Batch sizes, comma-separated: rows along the inputs' leading dimension.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(super) batch: Vec<usize>,
    /// Client threads sharing one loaded model, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(super) concurrency: Vec<usize>,
    /// Measure for this many seconds (default: until stable, see --window-ms).
    #[arg(long, conflicts_with = "iterations")]
    pub(super) duration: Option<f64>,
    /// Measure this many requests in all (default: until stable, see --window-ms).
    #[arg(long)]
    pub(super) iterations: Option<usize>,
    /// Untimed runs after the first one, before measuring.
    #[arg(long, default_value_t = 10)]
    pub(super) warmup: usize,
    /// Open loop: send this many requests per second in all, and count latency from each
    /// request's scheduled time (a stall shows in every request queued behind it).
    #[arg(long)]
    pub(super) rate: Option<f64>,
    /// An input: NAME=FILE.npy, or FILE.npy for the next input in signature order. Default: the
    /// model folder's first case (cases/*/input.NAME.npy), else inputs generated from the
    /// signature with --seed. Inputs are resized to each batch by taking their rows in turn.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy")]
    pub(super) inputs: Vec<TensorArg>,
    /// Which case folder under MODEL_DIR/cases to use (default: the first by name).
    #[arg(long)]
    pub(super) case: Option<String>,
    /// Seed for generated inputs.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Stability rule: window length in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub(super) window_ms: u64,
    /// Stability rule: consecutive windows whose throughput and median latency must agree.
    #[arg(long, default_value_t = 3)]
    pub(super) stable_windows: usize,
    /// Stability rule: how far (percent) each window may lie from their average.
    #[arg(long, default_value_t = 10.0)]
    pub(super) stability: f64,
    /// Stability rule: give up (and say "unstable") after this many windows.
    #[arg(long, default_value_t = 10)]
    pub(super) max_windows: usize,
    /// Parity: outputs match when |a - ref| <= atol + rtol * |ref|.
    #[arg(long, default_value_t = 1e-4)]
    pub(super) atol: f64,
    /// Parity: relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    pub(super) rtol: f64,
    /// Write the results as JSON to FILE ("-": standard output, instead of the table).
    #[arg(long, value_name = "FILE")]
    pub(super) json: Option<PathBuf>,
    /// Write the results as a Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    pub(super) markdown: Option<PathBuf>,
    /// Draw latency percentiles and throughput against concurrency to FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE")]
    pub(super) plot: Option<PathBuf>,
    /// Keep the inputs fed at each batch as DIR/MODEL/bBATCH/input.NAME.npy (for other tools,
    /// such as benches/python, to run the very same tensors).
    #[arg(long, value_name = "DIR")]
    pub(super) save_inputs: Option<PathBuf>,
    /// Also measure each backend shadowed by this one (the same file, compared on every
    /// request on a thread of the shadow's own), in rows named BACKEND+shadow:SHADOW: what
    /// shadow mode costs the primary.
    #[arg(long, value_name = "BACKEND")]
    pub(super) shadow: Option<String>,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// An error about a command-line option, naming it.
pub(super) fn arg_error(option: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidInput { input: Some(option.into()), message: format!("{option}: {message}") }
}

pub(super) fn check_args(args: &BenchArgs) -> Result<()> {
    let bad = |what: &str, message: String| Err(arg_error(what, message));
    if let Some(b) = args.batch.iter().find(|&&b| b == 0) {
        return bad("--batch", format!("expected sizes of 1 or more, got {b}"));
    }
    if let Some(c) = args.concurrency.iter().find(|&&c| c == 0) {
        return bad("--concurrency", format!("expected 1 or more client threads, got {c}"));
    }
    match args.duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            return bad("--duration", format!("expected seconds > 0, got {d}"))
        }
        _ => {}
    }
    if args.iterations == Some(0) {
        return bad("--iterations", "expected 1 or more, got 0".into());
    }
    match args.rate {
        Some(r) if !(r > 0.0 && r.is_finite()) => {
            return bad("--rate", format!("expected requests/s > 0, got {r}"))
        }
        _ => {}
    }
    if args.window_ms == 0 || args.stable_windows == 0 || args.max_windows == 0 {
        return bad("--window-ms/--stable-windows/--max-windows", "expected values of 1 or more".into());
    }
    if !(args.stability >= 0.0 && args.stability.is_finite()) {
        return bad("--stability", format!("expected a percentage >= 0, got {}", args.stability));
    }
    if let Some(plot) = &args.plot {
        plot::check_path(plot)?;
    }
    for name in &args.backends {
        if name != "all" {
            let backend = name.parse::<Backend>().map_err(|e| arg_error("--backend", e))?;
            rivet::backend(&backend).map_err(|e| arg_error("--backend", e))?;
        }
    }
    Ok(())
}

pub(super) fn plan(args: &BenchArgs, concurrency: usize) -> Plan {
    let stop = match (args.iterations, args.duration) {
        (Some(n), _) => Stop::Iterations(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Stable {
            window_s: args.window_ms as f64 / 1e3,
            windows: args.stable_windows,
            tolerance: args.stability / 100.0,
            max_windows: args.max_windows,
        },
    };
    Plan { concurrency, rate: args.rate, stop }
}
