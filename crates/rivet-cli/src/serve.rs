//! `rivet serve` (cargo feature `serve`, on by default): the command line over `rivet-server`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// `rivet serve`'s arguments.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The model repository: one folder per model (the model file and an optional
    /// config.toml or config.json).
    #[arg(long)]
    model_repository: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: std::net::IpAddr,
    /// HTTP/REST port (0: any free port).
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// gRPC port (0: any free port).
    #[arg(long, default_value_t = 8001)]
    grpc_port: u16,
    /// Prometheus metrics port (0: any free port).
    #[arg(long, default_value_t = 8002)]
    metrics_port: u16,
    /// The largest request accepted, in MiB (HTTP body or gRPC message).
    #[arg(long, default_value_t = 256)]
    max_request_mib: usize,
    /// How log lines are written to stderr: text, or one JSON object per line. Which are
    /// written follows RUST_LOG (default `info,rivet::access=warn`: set `rivet::access=info`
    /// for a line per request).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How models are loaded and unloaded while serving: none (all at start, never again),
    /// explicit (by the repository API's load and unload), poll (the repository rescanned every
    /// --repository-poll-secs: new, changed and removed folders load, reload and unload).
    #[arg(long, value_enum, default_value_t = ControlMode::None)]
    model_control_mode: ControlMode,
    /// In poll mode, seconds between rescans of the repository.
    #[arg(long, default_value_t = 15.0)]
    repository_poll_secs: f64,
    /// In explicit mode, a model to load at start (repeat for more; `*` loads them all).
    #[arg(long, value_name = "NAME")]
    load_model: Vec<String>,
}

/// `--model-control-mode`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ControlMode {
    /// Every model loads at start; load and unload are refused.
    None,
    /// Models load at start only with --load-model, then by request.
    Explicit,
    /// Every model loads at start; the repository is rescanned for changes.
    Poll,
}

/// The log's format.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the request's span (id, model, version).
    Json,
}

/// Logs to stderr as `format` says, filtered by RUST_LOG.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rivet::access=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Another subscriber (a test harness's) may already be set: its logging stays.
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).try_init(),
    };
}

/// Whether a model folder of the repository (or one of its version folders) holds a
/// preprocessing pipeline (`NAME.pipeline.json`).
#[allow(dead_code)] // rivet-tabular serves them itself
pub(crate) fn holds_a_pipeline(args: &ServeArgs) -> bool {
    let has =
        |dir: &std::path::Path| {
            std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_str().is_some_and(|n| n.ends_with(rivet_server::rows::PIPELINE_SUFFIX))
            })
        };
    std::fs::read_dir(&args.model_repository).into_iter().flatten().filter_map(|e| e.ok()).any(|model| {
        let dir = model.path();
        has(&dir)
            || std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .any(|v| v.file_name().to_str().is_some_and(|n| n.parse::<u64>().is_ok()) && has(&v.path()))
    })
}

/// Runs the server until SIGTERM or Ctrl-C, printing each model's state and the ports. Models
/// with a preprocessing pipeline load it through `pipelines`.
pub(crate) fn serve(args: &ServeArgs, pipelines: Option<rivet_server::rows::PipelineFinder>) -> ExitCode {
    init_logging(args.log_format);
    if !(args.repository_poll_secs.is_finite() && args.repository_poll_secs >= 0.05) {
        eprintln!("error: --repository-poll-secs: expected 0.05 or more, got {}", args.repository_poll_secs);
        return ExitCode::from(2);
    }
    let options = rivet_server::ServeOptions {
        repository: args.model_repository.clone(),
        host: args.host,
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        max_request_bytes: args.max_request_mib.saturating_mul(1 << 20),
        control_mode: match args.model_control_mode {
            ControlMode::None => rivet_server::ControlMode::None,
            ControlMode::Explicit => rivet_server::ControlMode::Explicit,
            ControlMode::Poll => rivet_server::ControlMode::Poll,
        },
        load_models: args.load_model.clone(),
        poll_interval: std::time::Duration::from_secs_f64(args.repository_poll_secs),
        pipelines,
    };
    if !args.load_model.is_empty() && args.model_control_mode != ControlMode::Explicit {
        eprintln!(
            "error: --load-model needs --model-control-mode explicit (the other modes load every model)"
        );
        return ExitCode::from(2);
    }
    // Status lines go to stdout; a closed stdout must not stop the server.
    use std::io::Write;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let result = rivet_server::serve_until_signal(&options, |server| {
        let repository = &server.state().repository;
        for line in repository.index(false).iter().filter(|e| e.version.is_empty()) {
            say(format!("model {}: {}", line.name, line.reason));
        }
        for entry in repository.models() {
            match &entry.state {
                Ok(served) => say(format!(
                    "model {} (version {}): ready on {} ({}){}",
                    entry.name,
                    entry.config.version,
                    served.model.backend(),
                    served.file.display(),
                    entry.shadow().map(|s| format!(", shadowed by {}", s.name)).unwrap_or_default()
                )),
                Err(reason) => say(format!(
                    "model {} (version {}): NOT READY: {reason}",
                    entry.name, entry.config.version
                )),
            }
        }
        let [http, grpc, metrics] = server.addresses();
        say(format!("serving: HTTP on {http}, gRPC on {grpc}, metrics on http://{metrics}/metrics"));
    });
    match result {
        Ok(()) => {
            say("shut down: every request in flight was answered".into());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
