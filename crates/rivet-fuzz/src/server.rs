//! The Open Inference Protocol requests `rivet serve` reads: an HTTP infer body (JSON, or JSON
//! and binary tensor data) and a gRPC `ModelInferRequest`.

use prost::Message;
use rivet_core::element_count;
use rivet_server::codec::RequestInputs;
use rivet_server::grpc::decode_infer_inputs;
use rivet_server::grpc::proto::ModelInferRequest;
use rivet_server::http::decode_infer_body;
use rivet_server::ServeError;

/// One OIP request, the way the server reads it. The first byte picks the transport: even, an
/// HTTP body ([`decode_infer_body`]), whose `Inference-Header-Content-Length` value is the
/// first line when bit 1 is set; odd, a protobuf `ModelInferRequest` decoded as tonic does and
/// then read by [`decode_infer_inputs`]. The verdict: a 400 (`BadRequest`) error, or tensors
/// whose bytes fill their shapes exactly and `BYTES` inputs with one element per position.
pub fn oip_request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    if pick & 1 == 0 {
        let (header, body) = match (pick & 2 != 0, rest.iter().position(|&b| b == b'\n')) {
            (true, Some(end)) => (Some(&rest[..end]), &rest[end + 1..]),
            _ => (None, rest),
        };
        match decode_infer_body(header, body) {
            Ok(request) => check_tensors(&request.inputs),
            Err(e) => assert!(matches!(e, ServeError::BadRequest(_)), "{e:?}"),
        }
    } else {
        // A message tonic could not decode never reaches Rivet.
        let Ok(mut request) = ModelInferRequest::decode(rest) else { return };
        let declared: Vec<(String, Vec<i64>)> =
            request.inputs.iter().map(|i| (i.name.clone(), i.shape.clone())).collect();
        match decode_infer_inputs(&mut request) {
            Ok(inputs) => {
                check_tensors(&inputs);
                let decoded = inputs
                    .tensors
                    .iter()
                    .map(|(name, t)| (name, t.shape()))
                    .chain(inputs.texts.iter().map(|t| (&t.name, t.shape.as_slice())));
                let mut decoded: Vec<(String, Vec<i64>)> = decoded
                    .map(|(name, shape)| (name.clone(), shape.iter().map(|&d| d as i64).collect()))
                    .collect();
                let mut declared = declared;
                decoded.sort();
                declared.sort();
                assert_eq!(decoded, declared);
            }
            Err(e) => assert!(matches!(e, ServeError::BadRequest(_)), "{e:?}"),
        }
    }
}

/// Every decoded tensor holds exactly its shape's bytes, and every `BYTES` input one element
/// per position of its shape.
fn check_tensors(inputs: &RequestInputs) {
    for (name, tensor) in &inputs.tensors {
        let count = element_count(tensor.shape()).expect("a decoded shape counts");
        assert_eq!(tensor.as_bytes().len(), count * tensor.dtype().size(), "input {name}");
    }
    for text in &inputs.texts {
        let count = element_count(&text.shape).expect("a decoded shape counts");
        assert_eq!(text.values.len(), count, "input {}", text.name);
    }
}
