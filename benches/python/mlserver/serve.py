"""Starts MLServer on a model folder (`serve.py FOLDER`), adding the one gRPC method
perf_analyzer needs that MLServer lacks: ModelConfig (Triton's `inference.GRPCInferenceService`).
It answers from the folder's model-settings.json files with max_batch_size 0; everything else is
MLServer's own. Run with the MLServer venv that `make bench-serve` creates.

MLServer's own protobuf module already owns the `inference.*` names, so the two messages are
encoded here by hand (field numbers from Triton's grpc_service.proto and model_config.proto)."""

import json
import pathlib
import sys

import grpc
from mlserver.cli.main import main
from mlserver.grpc import server as grpc_server

TYPES = {"BOOL": 1, "UINT8": 2, "INT8": 6, "INT16": 7, "INT32": 8, "INT64": 9, "FP16": 10, "FP32": 11,
         "FP64": 12, "BF16": 14}


def varint(n):
    n &= (1 << 64) - 1  # negative int64 values take ten bytes
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def config_response(settings):
    def tensor(t, dims_field):
        dims = b"".join(varint(d) for d in t["shape"])
        return (field(1, t["name"].encode()) + varint(2 << 3) + varint(TYPES[t["datatype"]])
                + field(dims_field, dims))
    config = field(1, settings["name"].encode()) + field(2, b"onnxruntime_onnx") + varint(4 << 3) + varint(0)
    config += b"".join(field(5, tensor(t, 4)) for t in settings.get("inputs", []))
    config += b"".join(field(6, tensor(t, 3)) for t in settings.get("outputs", []))
    return field(1, config)


def requested_name(data):
    """Field 1 (name) of a ModelConfigRequest."""
    at = 0
    while at < len(data):
        key, at = data[at], at + 1
        length, shift = 0, 0
        while True:
            byte, at = data[at], at + 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key == (1 << 3 | 2):
            return data[at:at + length].decode()
        at += length
    return ""


folder = pathlib.Path(sys.argv[-1]).resolve()
configs = {}
for path in folder.glob("*/model-settings.json"):
    settings = json.loads(path.read_text())
    configs[settings["name"]] = config_response(settings)


async def model_config(name, context):
    if name not in configs:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name}")
    return configs[name]


handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
    "ModelConfig": grpc.unary_unary_rpc_method_handler(
        model_config, request_deserializer=requested_name, response_serializer=lambda b: b),
})
original = grpc_server.GRPCServer._create_server


def create_server(self):
    server = original(self)
    server.add_generic_rpc_handlers((handler,))
    return server


grpc_server.GRPCServer._create_server = create_server
sys.argv = ["mlserver", "start", str(folder)]
main()
