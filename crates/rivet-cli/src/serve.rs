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
}

/// Runs the server until SIGTERM or Ctrl-C, printing each model's state and the ports.
pub(crate) fn serve(args: &ServeArgs) -> ExitCode {
    let options = rivet_server::ServeOptions {
        repository: args.model_repository.clone(),
        host: args.host,
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        max_request_bytes: args.max_request_mib.saturating_mul(1 << 20),
    };
    // Status lines go to stdout; a closed stdout must not stop the server.
    use std::io::Write;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let result = rivet_server::serve_until_signal(&options, |server| {
        for entry in server.state().repository.models() {
            match &entry.state {
                Ok(served) => say(format!(
                    "model {} (version {}): ready on {} ({})",
                    entry.name,
                    entry.config.version,
                    served.model.backend(),
                    served.file.display()
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
