//! The REST half of the protocol (axum): health, metadata, config, statistics and infer, with
//! JSON tensors and the binary tensor data extension.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rivet::Tensor;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::codec;
use crate::error::ServeError;
use crate::repository::{ModelEntry, TensorMeta};
use crate::ServerState;

/// The header that says how many leading bytes of a body are JSON (binary tensor extension).
pub const HEADER_LENGTH: &str = "inference-header-content-length";

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

type Answer = Result<Response, ServeError>;

/// A model route's path parameters; `version` only on `/versions/{version}/` routes.
#[derive(Deserialize)]
struct ModelPath {
    name: String,
    version: Option<String>,
}

/// The HTTP routes.
pub fn router(state: Arc<ServerState>) -> Router {
    let model_routes = |prefix: &str| {
        Router::new()
            .route(prefix, get(model_metadata))
            .route(&format!("{prefix}/ready"), get(model_ready))
            .route(&format!("{prefix}/config"), get(model_config))
            .route(&format!("{prefix}/stats"), get(model_stats))
            .route(&format!("{prefix}/infer"), post(infer))
    };
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{name}/load", post(load_model))
        .route("/v2/repository/models/{name}/unload", post(unload_model))
        .merge(model_routes("/v2/models/{name}"))
        .merge(model_routes("/v2/models/{name}/versions/{version}"))
        .fallback(|| async { ServeError::NotFound("no such route".into()) })
        .with_state(state)
}

/// `/metrics` in Prometheus' text format.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<ServerState>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
            }),
        )
        .with_state(state)
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": crate::SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": crate::EXTENSIONS,
    }))
}

async fn server_ready(State(state): State<Arc<ServerState>>) -> StatusCode {
    if state.repository.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn entry(state: &ServerState, path: &ModelPath) -> Result<Arc<ModelEntry>, ServeError> {
    state.repository.get(&path.name, path.version.as_deref())
}

fn tensor_meta(list: &[TensorMeta]) -> Value {
    list.iter()
        .map(|t| {
            json!({
                "name": t.name,
                "datatype": t.datatype(),
                "shape": t.shape,
            })
        })
        .collect()
}

async fn model_metadata(State(state): State<Arc<ServerState>>, Path(path): Path<ModelPath>) -> Answer {
    let entry = entry(&state, &path)?;
    let (inputs, outputs) = entry.metadata()?;
    Ok(Json(json!({
        "name": entry.name,
        "versions": state.repository.versions(&entry.name),
        "platform": entry.platform(),
        "inputs": tensor_meta(&inputs),
        "outputs": tensor_meta(&outputs),
    }))
    .into_response())
}

async fn model_ready(State(state): State<Arc<ServerState>>, Path(path): Path<ModelPath>) -> Answer {
    let entry = entry(&state, &path)?;
    entry.served()?;
    Ok(StatusCode::OK.into_response())
}

async fn model_config(State(state): State<Arc<ServerState>>, Path(path): Path<ModelPath>) -> Answer {
    let entry = entry(&state, &path)?;
    let (inputs, outputs) = entry.metadata()?;
    let batched = entry.config.max_batch_size > 0;
    let dims = |t: &TensorMeta| -> Vec<i64> { t.shape.iter().skip(usize::from(batched)).copied().collect() };
    let config_tensors = |list: &[TensorMeta]| -> Value {
        list.iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "data_type": t.config_type_name(),
                    "dims": dims(t),
                })
            })
            .collect()
    };
    let mut config = json!({
        "name": entry.name,
        "platform": entry.platform(),
        "backend": entry.backend_name(),
        "max_batch_size": entry.config.max_batch_size,
        "input": config_tensors(&inputs),
        "output": config_tensors(&outputs),
        "instance_group": [{"name": entry.name, "kind": "KIND_CPU", "count": entry.config.instances}],
    });
    if let Some(batching) = &entry.config.dynamic_batching {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": batching.preferred_batch_size,
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
        });
    }
    Ok(Json(config).into_response())
}

fn stats_json(entry: &ModelEntry) -> Value {
    let s = entry.statistics();
    let duration = |count: u64, ns: u64| json!({ "count": count, "ns": ns });
    json!({
        "name": entry.name,
        "version": entry.config.version,
        "last_inference": s.last_inference,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration(s.success.0, s.success.1),
            "fail": duration(s.fail, 0),
            "queue": duration(s.success.0, s.queue_ns),
            "compute_input": duration(s.success.0, 0),
            "compute_infer": duration(s.success.0, s.compute_ns),
            "compute_output": duration(s.success.0, 0),
        },
        "batch_stats": [],
    })
}

async fn model_stats(State(state): State<Arc<ServerState>>, Path(path): Path<ModelPath>) -> Answer {
    let entry = entry(&state, &path)?;
    Ok(Json(json!({ "model_stats": [stats_json(&entry)] })).into_response())
}

async fn all_stats(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(
        json!({ "model_stats": state.repository.models().iter().map(|e| stats_json(e)).collect::<Vec<_>>() }),
    )
}

/// The body of a repository request: optional, `{"ready": bool}` for the index and
/// `{"parameters": {...}}` for load and unload.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RepositoryRequest {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn repository_request(body: &[u8]) -> Result<RepositoryRequest, ServeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RepositoryRequest::default());
    }
    let request: RepositoryRequest =
        serde_json::from_slice(body).map_err(|e| ServeError::bad(format!("request JSON: {e}")))?;
    // Triton's overrides (a config or files sent with the load) are not taken.
    if let Some(key) = request.parameters.keys().find(|k| k.as_str() != "unload_dependents") {
        return Err(ServeError::bad(format!(
            "parameter \"{key}\" is not supported: rivet serve loads models from the repository's files"
        )));
    }
    Ok(request)
}

async fn repository_index(State(state): State<Arc<ServerState>>, body: axum::body::Bytes) -> Answer {
    let request = repository_request(&body)?;
    let index: Vec<Value> = state
        .repository
        .index(request.ready)
        .into_iter()
        .map(|e| json!({ "name": e.name, "version": e.version, "state": e.state, "reason": e.reason }))
        .collect();
    Ok(Json(Value::Array(index)).into_response())
}

async fn load_model(
    State(state): State<Arc<ServerState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    repository_request(&body)?;
    let repository = Arc::clone(&state);
    // Loading reads files and may compile models: off the async threads.
    tokio::task::spawn_blocking(move || repository.repository.load(&name))
        .await
        .map_err(|e| ServeError::Internal(format!("the load stopped: {e}")))??;
    Ok(StatusCode::OK.into_response())
}

async fn unload_model(
    State(state): State<Arc<ServerState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    repository_request(&body)?;
    state.repository.unload(&name)?;
    Ok(StatusCode::OK.into_response())
}

/// An infer request's JSON part.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn refuse_parameters(what: &str, parameters: &Map<String, Value>) -> Result<(), ServeError> {
    codec::refuse_parameters(what, parameters.keys().map(String::as_str))
}

fn bool_parameter(
    what: &str,
    parameters: &Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, ServeError> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            Err(ServeError::bad(format!("{what}: parameter \"{key}\" must be true or false, got {other}")))
        }
    }
}

/// Splits a body into its JSON header and binary part, at the length the
/// `Inference-Header-Content-Length` header gives (`header_length`, its raw value).
fn split_body<'a>(header_length: Option<&[u8]>, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ServeError> {
    let Some(value) = header_length else { return Ok((body, &[])) };
    let length: usize =
        std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
            ServeError::bad(format!(
                "header Inference-Header-Content-Length is not a length: {:?}",
                String::from_utf8_lossy(value)
            ))
        })?;
    if length > body.len() {
        return Err(ServeError::bad(format!(
            "Inference-Header-Content-Length is {length}, but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// An infer request as read from its HTTP body, checked in full before any model runs.
#[derive(Debug)]
pub struct InferBody {
    /// The request's `id`, echoed in the answer.
    pub id: Option<String>,
    /// The inputs, by name.
    pub inputs: codec::RequestInputs,
    /// The outputs asked for, in order, each with whether it goes back as binary data; empty
    /// asks for every output.
    pub outputs: Vec<(String, bool)>,
    /// Whether outputs not named in `outputs` go back as binary data (`binary_data_output`).
    pub binary_default: bool,
}

/// Reads an infer request's body: JSON, or JSON followed by binary tensor data when
/// `header_length` (the raw value of `Inference-Header-Content-Length`) is given. Every
/// malformed part (the length, the JSON, a datatype, a shape, a byte count, a parameter) is a
/// [`ServeError::BadRequest`] naming it; nothing is allocated for a tensor before its data is
/// known to be present.
pub fn decode_infer_body(header_length: Option<&[u8]>, body: &[u8]) -> Result<InferBody, ServeError> {
    let (json_part, binary) = split_body(header_length, body)?;
    let request: InferRequest =
        serde_json::from_slice(json_part).map_err(|e| ServeError::bad(format!("request JSON: {e}")))?;
    refuse_parameters("request", &request.parameters)?;
    let binary_default =
        bool_parameter("request", &request.parameters, "binary_data_output")?.unwrap_or(false);
    let mut outputs = Vec::with_capacity(request.outputs.len());
    for wanted in request.outputs {
        let what = format!("output \"{}\"", wanted.name);
        refuse_parameters(&what, &wanted.parameters)?;
        let binary = bool_parameter(&what, &wanted.parameters, "binary_data")?.unwrap_or(binary_default);
        outputs.push((wanted.name, binary));
    }
    Ok(InferBody { id: request.id, inputs: decode_inputs(request.inputs, binary)?, outputs, binary_default })
}

/// Decodes the request's inputs, taking binary inputs from `binary` in order.
fn decode_inputs(inputs: Vec<InferInput>, mut binary: &[u8]) -> Result<codec::RequestInputs, ServeError> {
    let mut decoded = codec::RequestInputs::default();
    for input in inputs {
        let what = format!("input \"{}\"", input.name);
        refuse_parameters(&what, &input.parameters)?;
        let text = input.datatype == codec::BYTES;
        let dtype =
            if text { rivet::DType::U8 } else { codec::parse_datatype(&input.name, &input.datatype)? };
        let shape = codec::parse_shape(&input.name, &input.shape)?;
        let tensor = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                    ServeError::bad(format!("{what}: binary_data_size {size} is not a size"))
                })?;
                if input.data.is_some() {
                    return Err(ServeError::bad(format!("{what} has both data and binary_data_size")));
                }
                if size > binary.len() {
                    return Err(ServeError::bad(format!(
                        "{what}: binary_data_size {size} runs past the end of the body ({} bytes left)",
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                if text {
                    decoded.texts.push(codec::text_from_raw(&input.name, &shape, bytes)?);
                    continue;
                }
                codec::tensor_from_raw(&input.name, dtype, &shape, bytes)?
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    ServeError::bad(format!("{what} has neither data nor binary_data_size"))
                })?;
                if text {
                    decoded.texts.push(codec::text_from_json(&input.name, &shape, data)?);
                    continue;
                }
                codec::tensor_from_json(&input.name, dtype, &shape, data)?
            }
        };
        decoded.tensors.push((input.name, tensor));
    }
    if !binary.is_empty() {
        return Err(ServeError::bad(format!(
            "the body has {} bytes of binary data that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    Ok(decoded)
}

async fn infer(
    State(state): State<Arc<ServerState>>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let entry = entry(&state, &path)?;
    let limit = state.max_request_bytes;
    let too_large =
        || ServeError::TooLarge(format!("the request is larger than the server's limit of {limit} bytes"));
    // Refused before reading when the client says how long it is.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    let request = decode_infer_body(headers.get(HEADER_LENGTH).map(HeaderValue::as_bytes), &body)?;
    let outputs = entry.infer("http", request.id.as_deref().unwrap_or(""), request.inputs).await?;

    // Which outputs, and which of them as binary.
    let chosen = codec::requested_outputs(&outputs, request.outputs.iter().map(|(name, _)| name.as_str()))?;
    let mut binary_flags: Vec<bool> = request.outputs.iter().map(|&(_, binary)| binary).collect();
    binary_flags.resize(chosen.len(), request.binary_default);
    let chosen: Vec<(&str, &Tensor, bool)> = chosen
        .iter()
        .zip(binary_flags)
        .map(|((name, tensor), binary)| (name.as_str(), tensor, binary))
        .collect();
    let mut blobs: Vec<&[u8]> = Vec::new();
    let described: Vec<Value> = chosen
        .iter()
        .map(|&(name, tensor, binary)| {
            let mut out = json!({
                "name": name,
                "datatype": codec::datatype_name(tensor.dtype()),
                "shape": tensor.shape(),
            });
            if binary {
                out["parameters"] = json!({ "binary_data_size": tensor.as_bytes().len() });
                blobs.push(tensor.as_bytes());
            } else {
                out["data"] = codec::tensor_to_json(tensor);
            }
            out
        })
        .collect();
    let mut response = json!({
        "model_name": entry.name,
        "model_version": entry.config.version,
        "outputs": described,
    });
    if let Some(id) = request.id {
        response["id"] = Value::String(id);
    }
    let header_json = serde_json::to_vec(&response).map_err(|e| ServeError::Internal(e.to_string()))?;
    if blobs.is_empty() {
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], header_json)
            .into_response());
    }
    let mut body = Vec::with_capacity(header_json.len() + blobs.iter().map(|b| b.len()).sum::<usize>());
    body.extend_from_slice(&header_json);
    for blob in blobs {
        body.extend_from_slice(blob);
    }
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(header_json.len())),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_parts_are_taken_in_order_and_lengths_checked() {
        assert_eq!(split_body(Some(b"4"), b"{}  abc").unwrap(), (&b"{}  "[..], &b"abc"[..]));
        assert_eq!(
            split_body(Some(b"x4"), b"{}").unwrap_err().to_string(),
            "header Inference-Header-Content-Length is not a length: \"x4\""
        );
        assert_eq!(
            split_body(Some(b"40"), b"{}").unwrap_err().to_string(),
            "Inference-Header-Content-Length is 40, but the body has only 2 bytes"
        );

        let input = |name: &str, size: u64| InferInput {
            name: name.into(),
            shape: vec![2],
            datatype: "UINT8".into(),
            parameters: json!({ "binary_data_size": size }).as_object().unwrap().clone(),
            data: None,
        };
        let decoded = decode_inputs(vec![input("a", 2), input("b", 2)], &[1, 2, 3, 4]).unwrap();
        assert_eq!(decoded.tensors[1].1.as_bytes(), &[3, 4]);
        assert_eq!(
            decode_inputs(vec![input("a", 2), input("b", 3)], &[1, 2, 3, 4]).unwrap_err().to_string(),
            "input \"b\": binary_data_size 3 runs past the end of the body (2 bytes left)"
        );
        assert_eq!(
            decode_inputs(vec![input("a", 2)], &[1, 2, 3]).unwrap_err().to_string(),
            "the body has 1 bytes of binary data that no input's binary_data_size accounts for"
        );
    }

    #[test]
    fn a_whole_body_is_checked_before_any_model_runs() {
        let header = br#"{"id":"r7","inputs":[{"name":"x","shape":[2],"datatype":"INT8","parameters":{"binary_data_size":2}}],"outputs":[{"name":"y"},{"name":"z","parameters":{"binary_data":false}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&[0xff, 7]);
        let length = header.len().to_string();
        let request = decode_infer_body(Some(length.as_bytes()), &body).unwrap();
        assert_eq!(request.id.as_deref(), Some("r7"));
        assert_eq!(request.inputs.tensors[0].1.as_slice::<i8>().unwrap(), &[-1, 7]);
        assert_eq!(request.outputs, [("y".to_owned(), true), ("z".to_owned(), false)]);
        assert!(request.binary_default);
        // A bad output parameter is refused with the rest of the request, before inference.
        let bad = br#"{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":"yes"}}]}"#;
        assert_eq!(
            decode_infer_body(None, bad).unwrap_err().to_string(),
            "output \"y\": parameter \"binary_data\" must be true or false, got \"yes\""
        );
        // A huge shape over a one-element `data` is refused by count, allocating nothing big.
        let huge = br#"{"inputs":[{"name":"x","shape":[1099511627776],"datatype":"FP32","data":[1]}]}"#;
        assert_eq!(
            decode_infer_body(None, huge).unwrap_err().to_string(),
            "input \"x\": shape [1099511627776] needs 1099511627776 elements, data has 1"
        );
    }
}
