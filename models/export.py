"""Exports Rivet's bundled models from PyTorch, with reference inputs and outputs.

Each network is built with a fixed seed, put in eval mode, and exported from the same weights as
TorchScript (`<name>.pt`, via torch.jit.script) and ONNX (`<name>.onnx`, opset 17). A sidecar
`<name>.spec.json` gives the dtypes, shapes and output names a TorchScript archive does not hold.
For each test case, inputs and the outputs of PyTorch eager are saved as `.npy` under
`<name>/cases/<case>/`: `input.<input name>.npy` and `output.<output name>.npy`.

For the MLP, `mlp.weights` also holds its Linear layers in a plain binary layout for the legacy
C++ scorer (cpp-examples/legacy_scorer): "RVTW0001", u32 layer count, then per layer u32 out,
u32 in, out*in f32 weights (row-major, PyTorch's [out, in]) and out f32 biases, little-endian.
`--weights-from models/mlp/mlp.pt` rewrites it from a saved TorchScript MLP without re-exporting.
`mlp/shadow/mlp_perturbed.onnx` is the MLP's ONNX file with one weight changed (the first bias of
its last layer, by +0.05, so every answer's first logit moves): the candidate that shadow mode's
tests must catch diverging. `mlp_perturbed` rewrites it alone from the exported `mlp.onnx`.

Run: .venv/bin/python models/export.py [--out models] [MODEL...]
`resnet18` (ResNet-18 with random weights, 45 MB per file) is exported only when named; it is
the compute-bound model of `make bench-compare` and is not committed.
"""

import argparse
import json
import math
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import torch
from torch import nn


class TabularMLP(nn.Module):
    """Float features -> class logits."""

    def __init__(self, features: int = 16, classes: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class SmallCNN(nn.Module):
    """NCHW 3x32x32 image -> 10 class logits."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.body(image)
        x = x.mean(dim=(2, 3))
        return self.head(x)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with a padding mask."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        qkv = self.qkv(x).reshape(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim) + bias
        attn = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(b, s, d)
        x = self.norm1(x + self.proj(ctx))
        return self.norm2(x + self.ff(x))


class TinyEncoder(nn.Module):
    """int64 token ids + attention mask -> hidden states."""

    def __init__(self, vocab: int = 100, dim: int = 32, heads: int = 4, layers: int = 2,
                 max_len: int = 64):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, 2 * dim) for _ in range(layers)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        pos = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        x = self.tokens(input_ids) + self.positions(pos)
        # Padding positions get a large negative bias so no query attends to them.
        bias = (1.0 - attention_mask.to(x.dtype)).unsqueeze(1).unsqueeze(2) * -1e4
        for layer in self.layers:
            x = layer(x, bias)
        return x


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (11.7 M parameters, torchvision's layout), random weights: the compute-bound
    model of `make bench-compare`. NCHW 3x112x112 (a quarter of ImageNet's pixels, so batch 64
    stays affordable on two cores) -> 1000 logits."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks = []
        cin = 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(image))
        return self.fc(torch.flatten(self.pool(x), 1))


def mlp_case(batch: int, gen: torch.Generator):
    return {"features": torch.randn(batch, 16, generator=gen)}


def cnn_case(batch: int, gen: torch.Generator):
    return {"image": torch.randn(batch, 3, 32, 32, generator=gen)}


def resnet_case(batch: int, gen: torch.Generator):
    return {"image": torch.randn(batch, 3, 112, 112, generator=gen)}


def encoder_case(batch: int, seq: int, gen: torch.Generator):
    ids = torch.randint(0, 100, (batch, seq), generator=gen, dtype=torch.int64)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    # Pad the tail of every other row so the mask matters.
    for row in range(1, batch, 2):
        mask[row, seq - seq // 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


MODELS = {
    "mlp": {
        "build": TabularMLP,
        "inputs": [("features", "f32", ["batch", 16])],
        "outputs": [("logits", "f32", ["batch", 3])],
        "cases": {"b1": lambda g: mlp_case(1, g), "b8": lambda g: mlp_case(8, g)},
    },
    "cnn": {
        "build": SmallCNN,
        "inputs": [("image", "f32", ["batch", 3, 32, 32])],
        "outputs": [("logits", "f32", ["batch", 10])],
        "cases": {"b1": lambda g: cnn_case(1, g), "b4": lambda g: cnn_case(4, g)},
    },
    "encoder": {
        "build": TinyEncoder,
        "inputs": [
            ("input_ids", "i64", ["batch", "sequence"]),
            ("attention_mask", "i64", ["batch", "sequence"]),
        ],
        "outputs": [("hidden_states", "f32", ["batch", "sequence", 32])],
        "cases": {
            "b1_s8": lambda g: encoder_case(1, 8, g),
            "b1_s24": lambda g: encoder_case(1, 24, g),
            "b4_s8": lambda g: encoder_case(4, 8, g),
            "b4_s24": lambda g: encoder_case(4, 24, g),
        },
    },
    # Exported on demand (`export.py resnet18`, done by `make bench-compare`): 45 MB per file,
    # not committed.
    "resnet18": {
        "build": ResNet18,
        "inputs": [("image", "f32", ["batch", 3, 112, 112])],
        "outputs": [("logits", "f32", ["batch", 1000])],
        "cases": {"b2": lambda g: resnet_case(2, g), "b4": lambda g: resnet_case(4, g)},
    },
}
ON_DEMAND = {"resnet18"}


def export_perturbed_mlp(out: Path) -> None:
    """The MLP's ONNX twin with the first bias of its last Gemm moved by +0.05."""
    model = onnx.load(str(out / "mlp" / "mlp.onnx"))
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    bias_name = gemms[-1].input[2]
    bias = next(t for t in model.graph.initializer if t.name == bias_name)
    values = numpy_helper.to_array(bias).copy()
    values[0] += np.float32(0.05)
    bias.CopyFrom(numpy_helper.from_array(values, bias_name))
    folder = out / "mlp" / "shadow"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "mlp_perturbed.onnx"))
    print(f"exported {folder / 'mlp_perturbed.onnx'} ({bias_name}[0] + 0.05)")


def write_dense_weights(state: dict, path: Path) -> None:
    """Writes the Linear layers of `state` (a state dict, in layer order) as `mlp.weights`."""
    layers = []
    for key, weight in state.items():
        if key.endswith(".weight") and weight.dim() == 2:
            bias = state[key[: -len("weight")] + "bias"]
            layers.append((weight.detach().float().contiguous(), bias.detach().float().contiguous()))
    with open(path, "wb") as f:
        f.write(b"RVTW0001")
        f.write(struct.pack("<I", len(layers)))
        for weight, bias in layers:
            out_features, in_features = weight.shape
            f.write(struct.pack("<II", out_features, in_features))
            f.write(weight.numpy().astype("<f4").tobytes())
            f.write(bias.numpy().astype("<f4").tobytes())


def spec_entry(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": shape}


def export(name: str, cfg: dict, out: Path) -> None:
    torch.manual_seed(0)
    model = cfg["build"]().eval()
    # Give BatchNorm non-trivial running statistics so folding it is actually exercised.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    input_names = [i[0] for i in cfg["inputs"]]
    output_names = [o[0] for o in cfg["outputs"]]

    gen = torch.Generator().manual_seed(1234)
    cases = {case: make(gen) for case, make in cfg["cases"].items()}
    example = next(iter(cases.values()))
    args = tuple(example[n] for n in input_names)

    scripted = torch.jit.script(model)
    scripted.save(str(folder / f"{name}.pt"))

    dynamic_axes = {}
    for n, _, shape in cfg["inputs"] + cfg["outputs"]:
        dynamic_axes[n] = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
    torch.onnx.export(
        model, args, str(folder / f"{name}.onnx"), dynamo=False, opset_version=17,
        input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
    )

    spec = {
        "inputs": [spec_entry(*i) for i in cfg["inputs"]],
        "outputs": [spec_entry(*o) for o in cfg["outputs"]],
    }
    (folder / f"{name}.spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    if name == "mlp":
        write_dense_weights(model.state_dict(), folder / f"{name}.weights")

    with torch.inference_mode():
        for case, inputs in cases.items():
            cdir = folder / "cases" / case
            cdir.mkdir(parents=True, exist_ok=True)
            outputs = model(*(inputs[n] for n in input_names))
            if isinstance(outputs, torch.Tensor):
                outputs = (outputs,)
            for n in input_names:
                np.save(cdir / f"input.{n}.npy", inputs[n].numpy())
            for n, value in zip(output_names, outputs):
                np.save(cdir / f"output.{n}.npy", value.numpy())
    print(f"exported {name}: {', '.join(sorted(p.name for p in folder.iterdir()))}")


class Identity(nn.Module):
    """Returns a copy of its input, whatever the dtype: tests tensor conversion."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


IDENTITY_DTYPES = {
    "f16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16,
    "f32": onnx.TensorProto.FLOAT, "f64": onnx.TensorProto.DOUBLE,
    "i8": onnx.TensorProto.INT8, "i16": onnx.TensorProto.INT16,
    "i32": onnx.TensorProto.INT32, "i64": onnx.TensorProto.INT64,
    "u8": onnx.TensorProto.UINT8, "bool": onnx.TensorProto.BOOL,
}


def identity_onnx(name: str, elem: int) -> onnx.ModelProto:
    """An ONNX Identity of element type `elem`, shape [n, 3] (opset 17, IR 8)."""
    x = onnx.helper.make_tensor_value_info("x", elem, ["n", 3])
    y = onnx.helper.make_tensor_value_info("y", elem, ["n", 3])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], f"identity_{name}", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def passthrough_onnx() -> onnx.ModelProto:
    """Outputs ONNX Runtime might serve from memory that is not the output's own: `x`, the graph
    input itself; `w`, an initializer; `c`, a Constant; and `y = x + w`. All f32 [2, 3]."""
    f32 = onnx.TensorProto.FLOAT
    w = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    ones = onnx.numpy_helper.from_array(np.ones((2, 3), dtype=np.float32))
    info = [onnx.helper.make_tensor_value_info(n, f32, [2, 3]) for n in ("x", "y", "w", "c")]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Constant", [], ["c"], value=ones),
         onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "passthrough", [info[0]], info, [w])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def broadcast_onnx() -> onnx.ModelProto:
    """`y = a + b` over f32 [n, 3] and [m, 3]: any n and m pass Rivet's signature check, and
    ONNX Runtime fails at run time unless they can broadcast (a run error, not a load error)."""
    f32 = onnx.TensorProto.FLOAT
    a = onnx.helper.make_tensor_value_info("a", f32, ["n", 3])
    b = onnx.helper.make_tensor_value_info("b", f32, ["m", 3])
    y = onnx.helper.make_tensor_value_info("y", f32, [None, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Add", ["a", "b"], ["y"])], "broadcast", [a, b], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export_identity(out: Path) -> None:
    """`identity.pt` (any dtype), one `identity_<dtype>.onnx` per dtype, shape [n, 3],
    `passthrough.onnx` and `broadcast.onnx`."""
    folder = out / "identity"
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Identity()).save(str(folder / "identity.pt"))
    for name, elem in IDENTITY_DTYPES.items():
        onnx.save(identity_onnx(name, elem), str(folder / f"identity_{name}.onnx"))
    # uint16 is a type Rivet's tensors do not carry: backends must refuse this one at load.
    onnx.save(identity_onnx("u16", onnx.TensorProto.UINT16), str(folder / "identity_u16.onnx"))
    onnx.save(passthrough_onnx(), str(folder / "passthrough.onnx"))
    onnx.save(broadcast_onnx(), str(folder / "broadcast.onnx"))
    print(f"exported identity: {', '.join(sorted(p.name for p in folder.iterdir()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "models", nargs="*", default=[*(m for m in MODELS if m not in ON_DEMAND), "identity"],
        help=f"which models to export (default: all but {', '.join(sorted(ON_DEMAND))})")
    parser.add_argument(
        "--weights-from", type=Path, metavar="MLP.pt",
        help="only write <MLP>.weights from a saved TorchScript MLP, beside it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.weights_from:
        state = torch.jit.load(str(args.weights_from)).state_dict()
        write_dense_weights(state, args.weights_from.with_suffix(".weights"))
        print(f"wrote {args.weights_from.with_suffix('.weights')}")
        return
    for name in args.models:
        if name == "identity":
            export_identity(args.out)
        elif name == "mlp_perturbed":
            export_perturbed_mlp(args.out)
        else:
            export(name, MODELS[name], args.out)
            if name == "mlp":
                export_perturbed_mlp(args.out)


if __name__ == "__main__":
    main()
