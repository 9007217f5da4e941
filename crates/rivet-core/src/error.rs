//! The one error type of Rivet's core and backends.

use std::path::PathBuf;

/// Result with Rivet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stable classification of [`Error`]s, for callers that branch on the kind of failure
/// (the C ABI maps these to its error codes; JSON reports carry them as `snake_case` strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The inputs given to `run` do not match the model's signature.
    InvalidInput,
    /// A tensor could not be built from the data given (length, alignment, bool bytes).
    InvalidTensor,
    /// A model file could not be read, parsed or loaded.
    ModelLoad,
    /// The backend does not support a format, dtype, device, operator or option.
    Unsupported,
    /// The backend failed while running a model.
    Backend,
    /// A file other than the model (an `.npy` or spec file) is missing or malformed.
    Io,
    /// A load option is malformed, unknown to its backend, or names an unknown backend.
    InvalidOption,
}

impl ErrorKind {
    /// The stable number the C ABI (`RIVET_ERROR_*`) and the C++ API (`rivet::ErrorCode`) give
    /// this kind. 1 (invalid argument) and 8 (panic) belong to those boundaries, not to a kind.
    pub const fn code(self) -> u32 {
        match self {
            ErrorKind::InvalidInput => 2,
            ErrorKind::InvalidTensor => 3,
            ErrorKind::ModelLoad => 4,
            ErrorKind::Unsupported => 5,
            ErrorKind::Backend => 6,
            ErrorKind::Io => 7,
            ErrorKind::InvalidOption => 9,
        }
    }
}

/// The library error behind a Rivet error, kept as its `source()`.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in Rivet. Messages name what failed and say expected vs found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs do not match the signature: wrong count, unknown or missing name, dtype, rank or
    /// dimension. The message names the input.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// The input concerned, when one is.
        input: Option<String>,
        /// What was expected and what was found.
        message: String,
    },

    /// Tensor data does not match its dtype and shape.
    #[error("invalid tensor: {0}")]
    InvalidTensor(String),

    /// A backend could not load a model file.
    #[error("{backend}: cannot load {}: {reason}", path.display())]
    Load {
        /// Backend that tried.
        backend: String,
        /// The model file.
        path: PathBuf,
        /// Why, in one line.
        reason: String,
        /// The library's error, when one caused it.
        #[source]
        source: Option<Source>,
    },

    /// `Backend::AUTO` tried every candidate backend and none loaded the model.
    #[error("no backend could load {}: {}", path.display(), list_attempts(attempts))]
    NoBackend {
        /// The model file.
        path: PathBuf,
        /// Each backend tried, in order, with its error.
        attempts: Vec<(String, Error)>,
    },

    /// The backend cannot do what was asked: a format, dtype, device, operator or option.
    #[error("{backend}: unsupported {what}")]
    Unsupported {
        /// Backend concerned.
        backend: String,
        /// What is unsupported, with what would be accepted where that helps.
        what: String,
    },

    /// The backend failed while running the model (a libtorch exception, an ORT status...).
    #[error("{backend}: run failed: {message}")]
    Backend {
        /// Backend concerned.
        backend: String,
        /// The library's message.
        message: String,
        /// The library's error, when one caused it.
        #[source]
        source: Option<Source>,
    },

    /// A file other than the model could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// The I/O or parse error, when one caused it.
        #[source]
        source: Option<Source>,
    },

    /// A load option is malformed, unknown to its backend (the message lists the known ones),
    /// or names a backend that is not registered.
    #[error("invalid option {key}: {message}")]
    InvalidOption {
        /// The backend the option was given to, when known.
        backend: Option<String>,
        /// The option's key (or the whole text when it could not be split).
        key: String,
        /// What was wrong and what is accepted.
        message: String,
    },
}

fn list_attempts(attempts: &[(String, Error)]) -> String {
    if attempts.is_empty() {
        return "no backend accepts this format".to_owned();
    }
    attempts.iter().map(|(backend, err)| format!("[{backend}] {err}")).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// The message followed by each cause in the source chain that it does not already
    /// contain (`...: caused by: ...`), for callers with no chain to walk (C, C++).
    pub fn message_with_causes(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = one_line(cause);
            if !message.contains(&text) {
                message.push_str(": caused by: ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }

    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::InvalidTensor(_) => ErrorKind::InvalidTensor,
            Error::Load { .. } | Error::NoBackend { .. } => ErrorKind::ModelLoad,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::File { .. } => ErrorKind::Io,
            Error::InvalidOption { .. } => ErrorKind::InvalidOption,
        }
    }

    /// An [`Error::InvalidInput`] about the input `name`.
    pub fn invalid_input(name: &str, message: impl std::fmt::Display) -> Error {
        Error::InvalidInput { input: Some(name.to_owned()), message: format!("input \"{name}\": {message}") }
    }

    /// An [`Error::Load`].
    pub fn load(backend: &str, path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Error {
        Error::Load { backend: backend.to_owned(), path: path.into(), reason: one_line(reason), source: None }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(backend: &str, what: impl std::fmt::Display) -> Error {
        Error::Unsupported { backend: backend.to_owned(), what: what.to_string() }
    }

    /// An [`Error::Backend`].
    pub fn backend(backend: &str, message: impl std::fmt::Display) -> Error {
        Error::Backend { backend: backend.to_owned(), message: one_line(message), source: None }
    }

    /// An [`Error::File`].
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Error {
        Error::File { path: path.into(), message: message.to_string(), source: None }
    }

    /// Keeps `cause` as this error's `source()` (for [`Error::Load`], [`Error::Backend`] and
    /// [`Error::File`]; other variants are returned unchanged).
    pub fn with_source(mut self, cause: impl Into<Source>) -> Error {
        match &mut self {
            Error::Load { source, .. } | Error::Backend { source, .. } | Error::File { source, .. } => {
                *source = Some(cause.into())
            }
            _ => {}
        }
        self
    }
}

/// Keeps the first line of a library message (libtorch appends a C++ backtrace after it) and
/// caps its length, so errors stay one readable line.
pub fn one_line(message: impl std::fmt::Display) -> String {
    const MAX: usize = 400;
    let text = message.to_string();
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned();
    if line.chars().count() > MAX {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = Error::invalid_input("x", "expected dtype f32, got i64");
        assert_eq!(e.to_string(), "invalid input: input \"x\": expected dtype f32, got i64");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Error::load("tch", "/m/a.pt", "boom\n  frame 1\n  frame 2");
        assert_eq!(e.to_string(), "tch: cannot load /m/a.pt: boom");
        let all = Error::NoBackend {
            path: "m.onnx".into(),
            attempts: vec![
                ("ort".into(), Error::load("ort", "m.onnx", "bad")),
                ("candle".into(), Error::unsupported("candle", "operator Foo")),
            ],
        };
        assert_eq!(
            all.to_string(),
            "no backend could load m.onnx: [ort] ort: cannot load m.onnx: bad; \
             [candle] candle: unsupported operator Foo"
        );
        assert!(one_line("x".repeat(1000)).ends_with('…'));
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::load("ort", "m.onnx", &io).with_source(io);
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(source.to_string(), "gone");
        assert_eq!(serde_json::to_string(&ErrorKind::InvalidOption).unwrap(), "\"invalid_option\"");
    }
}
