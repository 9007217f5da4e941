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
