"""A minimal MLServer runtime that runs an ONNX model with onnxruntime: the Python OIP server
`make bench-serve` measures `rivet serve` against (same model, threads, protocol and load).

MLServer has no model configuration endpoint, which perf_analyzer reads before it starts; the
runtime answers it over REST (one model per server) with max_batch_size 0, so perf_analyzer sends
the shapes given with --shape, exactly as it does to `rivet serve`."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        threads = int((self.settings.parameters.extra or {}).get("threads", 1))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, options,
                                             providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, np.asarray(r)) for name, r in zip(self._outputs, results)],
        )

    @custom_handler(rest_path="/v2/models/{model_name}/config", rest_method="GET")
    async def triton_config(self, model_name: str) -> dict:
        def tensors(items):
            return [{"name": t.name, "data_type": "TYPE_" + t.datatype, "dims": t.shape} for t in items]
        return {"name": self.name, "platform": "onnxruntime_onnx", "max_batch_size": 0,
                "input": tensors(self.settings.inputs), "output": tensors(self.settings.outputs)}
