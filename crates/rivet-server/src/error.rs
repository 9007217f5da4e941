//! What a request can get back instead of outputs, mapped once to HTTP statuses and gRPC codes.

use rivet::ErrorKind;

/// Why a request failed. Each variant maps to one HTTP status and one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// The request is malformed or does not match the model (HTTP 400, INVALID_ARGUMENT).
    #[error("{0}")]
    BadRequest(String),
    /// No model, version or route of that name (HTTP 404, NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The model is not ready or its queue is full (HTTP 503, UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The request is larger than the server accepts (HTTP 413, RESOURCE_EXHAUSTED).
    #[error("{0}")]
    TooLarge(String),
    /// The backend failed while running the model (HTTP 500, INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    /// A 400 with `message`.
    pub fn bad(message: impl Into<String>) -> ServeError {
        ServeError::BadRequest(message.into())
    }

    /// The error's kind as the access log names it: `bad_request`, `not_found`, `too_large`,
    /// `internal` or `unavailable`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ServeError::BadRequest(_) => "bad_request",
            ServeError::NotFound(_) => "not_found",
            ServeError::TooLarge(_) => "too_large",
            ServeError::Internal(_) => "internal",
            ServeError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::BadRequest(_) => 400,
            ServeError::NotFound(_) => 404,
            ServeError::TooLarge(_) => 413,
            ServeError::Internal(_) => 500,
            ServeError::Unavailable(_) => 503,
        }
    }

    /// The gRPC status this error is answered with.
    pub fn grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            ServeError::BadRequest(_) => tonic::Status::invalid_argument(message),
            ServeError::NotFound(_) => tonic::Status::not_found(message),
            ServeError::TooLarge(_) => tonic::Status::resource_exhausted(message),
            ServeError::Internal(_) => tonic::Status::internal(message),
            ServeError::Unavailable(_) => tonic::Status::unavailable(message),
        }
    }
}

impl From<rivet::Error> for ServeError {
    fn from(error: rivet::Error) -> ServeError {
        let message = error.message_with_causes();
        match error.kind() {
            ErrorKind::InvalidInput | ErrorKind::InvalidTensor | ErrorKind::InvalidOption => {
                ServeError::BadRequest(message)
            }
            ErrorKind::Unsupported => ServeError::BadRequest(message),
            _ => ServeError::Internal(message),
        }
    }
}

/// Why the server, or one model of its repository, cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model repository cannot be read.
    #[error("model repository {}: {source}", path.display())]
    Repository {
        /// The repository's folder.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder of a model cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// What could not be read.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A model folder's configuration does not parse, or its values cannot work together.
    #[error("{}: {message}", path.display())]
    Config {
        /// The configuration file, or the model folder.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A model folder holds no model file, or several and no `model_file` naming one.
    #[error("{0}")]
    ModelFile(String),
    /// Rivet refused the model: its backend, its options or the file itself.
    #[error("{}", .0.message_with_causes())]
    Model(#[from] rivet::Error),
    /// The model's signature cannot be batched as configured.
    #[error("{0}")]
    Batching(String),
    /// Threads (a model's workers, the async runtime) cannot be started.
    #[error("cannot start {what}: {source}")]
    Threads {
        /// Which threads.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A port cannot be bound.
    #[error("{what} port {addr}: {source}")]
    Bind {
        /// Which server: HTTP, gRPC or metrics.
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// One of the servers stopped with an error.
    #[error("{what} server: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Loading the repository on its thread failed (it panicked).
    #[error("loading the repository failed: {0}")]
    Loading(String),
}
