//! The gRPC half of the protocol (tonic): Triton's `inference.GRPCInferenceService`.

use std::sync::Arc;

use rivet::{DType, Tensor};
use tonic::{Request, Response, Status};

use crate::codec;
use crate::error::ServeError;
use crate::repository::{ModelEntry, TensorMeta};
use crate::ServerState;

/// The messages and service generated from `proto/inference.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::GrpcInferenceService;
pub use proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use proto::*;

/// The service over the server's state.
pub struct Service {
    state: Arc<ServerState>,
}

impl Service {
    /// The tonic service, with message limits raised to the server's request limit.
    pub fn server(state: Arc<ServerState>) -> GrpcInferenceServiceServer<Service> {
        let limit = state.max_request_bytes;
        GrpcInferenceServiceServer::new(Service { state })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    fn entry(&self, name: &str, version: &str) -> Result<Arc<ModelEntry>, Status> {
        self.state.repository.get(name, Some(version)).map_err(|e| e.grpc_status())
    }
}

fn tensor_metadata(list: Vec<TensorMeta>) -> Vec<model_metadata_response::TensorMetadata> {
    list.into_iter()
        .map(|t| model_metadata_response::TensorMetadata {
            datatype: t.datatype().to_owned(),
            name: t.name,
            shape: t.shape,
        })
        .collect()
}

/// A tensor from the typed `contents` field.
fn tensor_from_contents(
    name: &str,
    dtype: DType,
    shape: &[usize],
    contents: Option<InferTensorContents>,
) -> Result<Tensor, ServeError> {
    let contents = contents.unwrap_or_default();
    fn narrow<T: TryFrom<i64>>(name: &str, values: &[i64], what: &str) -> Result<Vec<T>, ServeError> {
        values
            .iter()
            .map(|&v| {
                T::try_from(v)
                    .map_err(|_| ServeError::bad(format!("input \"{name}\": {v} is out of range for {what}")))
            })
            .collect()
    }
    let wide = |v: &[i32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
    let bytes: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(&contents.fp32_contents).to_vec(),
        DType::F64 => bytemuck::cast_slice(&contents.fp64_contents).to_vec(),
        DType::I64 => bytemuck::cast_slice(&contents.int64_contents).to_vec(),
        DType::I32 => bytemuck::cast_slice(&contents.int_contents).to_vec(),
        DType::I16 => {
            bytemuck::cast_slice(&narrow::<i16>(name, &wide(&contents.int_contents), "INT16")?).to_vec()
        }
        DType::I8 => {
            bytemuck::cast_slice(&narrow::<i8>(name, &wide(&contents.int_contents), "INT8")?).to_vec()
        }
        DType::U8 => {
            let values: Vec<i64> = contents.uint_contents.iter().map(|&v| i64::from(v)).collect();
            narrow::<u8>(name, &values, "UINT8")?
        }
        DType::Bool => contents.bool_contents.iter().map(|&b| u8::from(b)).collect(),
        DType::F16 | DType::BF16 => {
            return Err(ServeError::bad(format!(
                "input \"{name}\": {} has no typed contents field: send it in raw_input_contents",
                codec::datatype_name(dtype)
            )))
        }
    };
    let count = bytes.len() / dtype.size();
    let expected = rivet::element_count(shape).unwrap_or(usize::MAX);
    if count != expected {
        return Err(ServeError::bad(format!(
            "input \"{name}\": shape {shape:?} needs {expected} elements, contents has {count}"
        )));
    }
    codec::tensor_from_raw(name, dtype, shape, &bytes)
}

/// Reads a ModelInfer request's inputs (typed `contents` or `raw_input_contents`), taking them
/// out of `request`; every malformed part is a [`ServeError::BadRequest`] naming the input.
pub fn decode_infer_inputs(request: &mut ModelInferRequest) -> Result<codec::RequestInputs, ServeError> {
    let raw = std::mem::take(&mut request.raw_input_contents);
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ServeError::bad(format!(
            "raw_input_contents has {} entries for {} inputs: give all inputs raw or none",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut decoded = codec::RequestInputs::default();
    for (i, input) in std::mem::take(&mut request.inputs).into_iter().enumerate() {
        codec::refuse_parameters(
            &format!("input \"{}\"", input.name),
            input.parameters.keys().map(String::as_str),
        )?;
        let shape = codec::parse_shape(&input.name, &input.shape)?;
        if input.datatype == codec::BYTES {
            let text = match (raw.get(i), input.contents) {
                (Some(_), Some(_)) => {
                    return Err(ServeError::bad(format!(
                        "input \"{}\" has both contents and raw_input_contents",
                        input.name
                    )))
                }
                (Some(bytes), None) => codec::text_from_raw(&input.name, &shape, bytes)?,
                (None, contents) => {
                    let mut joined = Vec::new();
                    for element in contents.unwrap_or_default().bytes_contents {
                        joined.extend_from_slice(
                            &u32::try_from(element.len()).unwrap_or(u32::MAX).to_le_bytes(),
                        );
                        joined.extend_from_slice(&element);
                    }
                    codec::text_from_raw(&input.name, &shape, &joined)?
                }
            };
            decoded.texts.push(text);
            continue;
        }
        let dtype = codec::parse_datatype(&input.name, &input.datatype)?;
        let tensor = match raw.get(i) {
            Some(bytes) => {
                if input.contents.is_some() {
                    return Err(ServeError::bad(format!(
                        "input \"{}\" has both contents and raw_input_contents",
                        input.name
                    )));
                }
                codec::tensor_from_raw(&input.name, dtype, &shape, bytes)?
            }
            None => tensor_from_contents(&input.name, dtype, &shape, input.contents)?,
        };
        decoded.tensors.push((input.name, tensor));
    }
    Ok(decoded)
}

fn statistics(entry: &ModelEntry) -> ModelStatistics {
    let s = entry.statistics();
    let d = |count: u64, ns: u64| Some(StatisticDuration { count, ns });
    ModelStatistics {
        name: entry.name.clone(),
        version: entry.config.version.clone(),
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(InferStatistics {
            success: d(s.success.0, s.success.1),
            fail: d(s.fail, 0),
            queue: d(s.success.0, s.queue_ns),
            compute_input: d(s.success.0, 0),
            compute_infer: d(s.success.0, s.compute_ns),
            compute_output: d(s.success.0, 0),
        }),
        batch_stats: Vec::new(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.state.repository.all_ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self.entry(&request.name, &request.version).is_ok_and(|e| e.state.is_ok());
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: crate::SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let entry = self.entry(&request.name, &request.version)?;
        let (inputs, outputs) = entry.metadata().map_err(|e| e.grpc_status())?;
        Ok(Response::new(ModelMetadataResponse {
            name: entry.name.clone(),
            versions: self.state.repository.versions(&entry.name),
            platform: entry.platform().into(),
            inputs: tensor_metadata(inputs),
            outputs: tensor_metadata(outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let mut request = request.into_inner();
        let entry = self.entry(&request.model_name, &request.model_version)?;
        let inputs = decode_infer_inputs(&mut request).map_err(|e| e.grpc_status())?;
        let outputs = entry.infer("grpc", &request.id, inputs).await.map_err(|e| e.grpc_status())?;
        let chosen = codec::requested_outputs(&outputs, request.outputs.iter().map(|o| o.name.as_str()))
            .map_err(|e| e.grpc_status())?;
        Ok(Response::new(ModelInferResponse {
            model_name: entry.name.clone(),
            model_version: entry.config.version.clone(),
            id: request.id,
            parameters: Default::default(),
            outputs: chosen
                .iter()
                .map(|(name, tensor)| model_infer_response::InferOutputTensor {
                    name: name.clone(),
                    datatype: codec::datatype_name(tensor.dtype()).into(),
                    shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                    parameters: Default::default(),
                    contents: None,
                })
                .collect(),
            raw_output_contents: chosen.iter().map(|(_, t)| t.as_bytes().to_vec()).collect(),
        }))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let entry = self.entry(&request.name, &request.version)?;
        let (inputs, outputs) = entry.metadata().map_err(|e| e.grpc_status())?;
        let skip = usize::from(entry.config.max_batch_size > 0);
        let data_type = |t: &TensorMeta| t.config_type();
        Ok(Response::new(ModelConfigResponse {
            config: Some(ModelConfig {
                name: entry.name.clone(),
                platform: entry.platform().into(),
                backend: entry.backend_name(),
                max_batch_size: i32::try_from(entry.config.max_batch_size).unwrap_or(i32::MAX),
                input: inputs
                    .iter()
                    .map(|t| ModelInput {
                        name: t.name.clone(),
                        data_type: data_type(t),
                        dims: t.shape.iter().skip(skip).copied().collect(),
                    })
                    .collect(),
                output: outputs
                    .iter()
                    .map(|t| ModelOutput {
                        name: t.name.clone(),
                        data_type: data_type(t),
                        dims: t.shape.iter().skip(skip).copied().collect(),
                    })
                    .collect(),
                instance_group: vec![ModelInstanceGroup {
                    name: entry.name.clone(),
                    count: i32::try_from(entry.config.instances).unwrap_or(i32::MAX),
                    kind: model_instance_group::Kind::Cpu as i32,
                }],
                dynamic_batching: entry.config.dynamic_batching.as_ref().map(|b| ModelDynamicBatching {
                    preferred_batch_size: b.preferred_batch_size.iter().map(|&n| n as i32).collect(),
                    max_queue_delay_microseconds: b.max_queue_delay_us,
                }),
            }),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let model_stats = if request.name.is_empty() {
            self.state.repository.models().iter().map(|e| statistics(e)).collect()
        } else {
            vec![statistics(&*self.entry(&request.name, &request.version)?)]
        };
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let request = request.into_inner();
        let models = self
            .state
            .repository
            .index(request.ready)
            .into_iter()
            .map(|e| repository_index_response::ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state.into(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let request = request.into_inner();
        check_parameters(request.parameters.keys())?;
        let state = Arc::clone(&self.state);
        // Loading reads files and may compile models: off the async threads.
        tokio::task::spawn_blocking(move || state.repository.load(&request.model_name))
            .await
            .map_err(|e| Status::internal(format!("the load stopped: {e}")))?
            .map_err(|e| e.grpc_status())?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let request = request.into_inner();
        check_parameters(request.parameters.keys())?;
        self.state.repository.unload(&request.model_name).map_err(|e| e.grpc_status())?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}

/// Triton's load overrides (a config or files sent with the request) are not taken.
fn check_parameters<'a>(mut keys: impl Iterator<Item = &'a String>) -> Result<(), Status> {
    match keys.find(|k| k.as_str() != "unload_dependents") {
        Some(key) => Err(Status::invalid_argument(format!(
            "parameter \"{key}\" is not supported: rivet serve loads models from the repository's files"
        ))),
        None => Ok(()),
    }
}
