//! `rivet serve`: Rivet's models behind the Open Inference Protocol (KServe v2, the protocol
//! Triton speaks), over HTTP/REST and gRPC, with Triton-style dynamic batching and Prometheus
//! metrics, so existing Triton and KServe clients call Rivet unchanged.
//!
//! ```no_run
//! # async fn start() -> Result<(), rivet_server::StartError> {
//! let options = rivet_server::ServeOptions::new("models/serve");
//! let server = rivet_server::Server::bind(&options).await?;
//! server.run(rivet_server::shutdown_signal()).await
//! # }
//! ```

#![warn(missing_docs)]

mod batcher;
pub mod codec;
pub mod config;
pub mod control;
mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod repository;
pub mod rows;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{BatchingPolicy, DynamicBatching, ModelConfig, ShadowConfig, VersionPolicy};
pub use control::{ControlMode, Repository};
pub use error::{ServeError, StartError};
use metrics::Metrics;
use tokio::net::TcpListener;

/// The name the server reports in its metadata.
pub const SERVER_NAME: &str = "rivet";

/// The protocol extensions it implements.
pub const EXTENSIONS: [&str; 5] =
    ["binary_tensor_data", "model_configuration", "model_repository", "statistics", "metrics"];

/// Where and how to serve.
#[derive(Clone)]
pub struct ServeOptions {
    /// The model repository: one folder per model.
    pub repository: PathBuf,
    /// The address every port listens on.
    pub host: IpAddr,
    /// HTTP/REST port (0: any free port).
    pub http_port: u16,
    /// gRPC port (0: any free port).
    pub grpc_port: u16,
    /// Prometheus metrics port (0: any free port).
    pub metrics_port: u16,
    /// The largest request body (HTTP) or message (gRPC) accepted, in bytes.
    pub max_request_bytes: usize,
    /// How models are loaded and unloaded while serving.
    pub control_mode: ControlMode,
    /// In explicit mode, the models loaded at start (`*`: all of them).
    pub load_models: Vec<String>,
    /// In poll mode, how often the repository is rescanned.
    pub poll_interval: std::time::Duration,
    /// Loads the preprocessing pipeline beside a model file, for models that take raw rows
    /// (`None`: a model with a pipeline does not load, saying what serves it).
    pub pipelines: Option<rows::PipelineFinder>,
}

impl ServeOptions {
    /// Triton's ports (8000, 8001, 8002) on every interface, and a 256 MiB request limit.
    pub fn new(repository: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            repository: repository.into(),
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 8000,
            grpc_port: 8001,
            metrics_port: 8002,
            max_request_bytes: 256 << 20,
            control_mode: ControlMode::None,
            load_models: Vec::new(),
            poll_interval: std::time::Duration::from_secs(15),
            pipelines: None,
        }
    }
}

/// What the handlers share.
pub struct ServerState {
    /// The models.
    pub repository: Repository,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The request size limit.
    pub max_request_bytes: usize,
    /// In poll mode, how often the repository is rescanned.
    pub poll_interval: std::time::Duration,
}

/// A server with its models loaded and its ports bound, not yet serving.
pub struct Server {
    state: Arc<ServerState>,
    http: TcpListener,
    grpc: TcpListener,
    metrics: TcpListener,
}

impl Server {
    /// Loads the repository's models and binds the three ports. A model that fails to load
    /// does not stop the server (see [`Server::state`]); an unreadable repository or a port in
    /// use does.
    pub async fn bind(options: &ServeOptions) -> Result<Server, StartError> {
        let metrics = Arc::new(Metrics::default());
        let dir = options.repository.clone();
        let loader = Arc::clone(&metrics);
        let (mode, load, pipelines) =
            (options.control_mode, options.load_models.clone(), options.pipelines.clone());
        // Loading reads files and may compile models: off the async threads.
        let repository =
            tokio::task::spawn_blocking(move || Repository::open(&dir, mode, &load, loader, pipelines))
                .await
                .map_err(|e| StartError::Loading(e.to_string()))??;
        let bind = |port: u16, what: &'static str| {
            let addr = SocketAddr::new(options.host, port);
            async move { TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source }) }
        };
        Ok(Server {
            state: Arc::new(ServerState {
                repository,
                metrics,
                max_request_bytes: options.max_request_bytes,
                poll_interval: options.poll_interval,
            }),
            http: bind(options.http_port, "HTTP").await?,
            grpc: bind(options.grpc_port, "gRPC").await?,
            metrics: bind(options.metrics_port, "metrics").await?,
        })
    }

    /// The models and shared state.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// The bound HTTP, gRPC and metrics addresses.
    pub fn addresses(&self) -> [SocketAddr; 3] {
        [&self.http, &self.grpc, &self.metrics]
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` completes, then stops accepting and finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|&s| s).await;
            }
        };
        use axum::serve::ListenerExt;
        let nodelay = |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        };
        let http = axum::serve(self.http.tap_io(nodelay), http::router(Arc::clone(&self.state)))
            .with_graceful_shutdown(wait());
        let metrics =
            axum::serve(self.metrics.tap_io(nodelay), http::metrics_router(Arc::clone(&self.state)))
                .with_graceful_shutdown(wait());
        let incoming = tonic::transport::server::TcpIncoming::from(self.grpc).with_nodelay(Some(true));
        let grpc = tonic::transport::Server::builder()
            .add_service(grpc::Service::server(Arc::clone(&self.state)))
            .serve_with_incoming_shutdown(incoming, wait());
        if self.state.repository.mode() == ControlMode::Poll {
            let state = Arc::clone(&self.state);
            let stopped = wait();
            tokio::spawn(async move {
                tokio::pin!(stopped);
                let mut ticks = tokio::time::interval(state.poll_interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await; // the first tick is now: the models have just loaded
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = &mut stopped => return,
                    }
                    let state = Arc::clone(&state);
                    // Loading reads files and may compile models: off the async threads.
                    let _ = tokio::task::spawn_blocking(move || state.repository.poll()).await;
                }
            });
        }
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let (http, grpc, metrics) = tokio::join!(http, grpc, metrics);
        http.map_err(|e| StartError::Serve { what: "HTTP", source: e.into() })?;
        grpc.map_err(|e| StartError::Serve { what: "gRPC", source: e.into() })?;
        metrics.map_err(|e| StartError::Serve { what: "metrics", source: e.into() })?;
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs a server on a runtime of its own until SIGTERM or Ctrl-C; `started` sees it once the
/// models are loaded and the ports bound (to print them).
pub fn serve_until_signal(options: &ServeOptions, started: impl FnOnce(&Server)) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rivet-serve")
        .build()
        .map_err(|source| StartError::Threads { what: "the async runtime", source })?;
    runtime.block_on(async {
        let server = Server::bind(options).await?;
        started(&server);
        server.run(shutdown_signal()).await
    })
}
