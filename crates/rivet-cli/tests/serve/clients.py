"""Drives a running `rivet serve` with Triton's own clients (tritonclient HTTP and gRPC) and
perf_analyzer, and prints one JSON line per check: {"check": ..., "ok": ..., "detail": ...}.

Run by crates/rivet-cli/tests/serve.rs, which builds the model repository, starts the server
and fails on any line with "ok": false. Expected outputs are the PyTorch references in
models/*/cases (written by models/export.py) or torch.jit runs of the bundled .pt files.
"""

import argparse
import json
import pathlib
import re
import subprocess
import threading
import time
import urllib.request

import numpy as np
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

RTOL = 1e-4
ATOL = 1e-4
failures = 0


def report(check, ok, detail=""):
    global failures
    failures += 0 if ok else 1
    print(json.dumps({"check": check, "ok": bool(ok), "detail": str(detail)}), flush=True)


def run_check(check, fn):
    try:
        ok, detail = fn()
    except Exception as e:  # noqa: BLE001 - every failure becomes a report line
        ok, detail = False, f"{type(e).__name__}: {e}"
    report(check, ok, detail)


def raises(fn, *needles):
    """Calls fn: (True, message) when it raised the server's error with every needle in its
    message, else (False, what happened)."""
    try:
        fn()
    except InferenceServerException as e:
        text = str(e)
        return all(n in text for n in needles), text
    return False, "no exception"


def close(got, want):
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, f"got {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
    return bool(np.allclose(got, want, rtol=RTOL, atol=ATOL)), f"max abs diff {diff:.3g}"


def cases(models, name):
    """(case name, {input: array}, {output: array}) for each reference case of a bundled model."""
    for case in sorted((models / name / "cases").iterdir()):
        ins = {p.name[len("input."):-4]: np.load(p) for p in case.glob("input.*.npy")}
        outs = {p.name[len("output."):-4]: np.load(p) for p in case.glob("output.*.npy")}
        yield case.name, ins, outs


def infer(client, module, model, inputs, binary, output_names=None):
    tensors = []
    for name, array in inputs.items():
        t = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if module is httpclient:
            t.set_data_from_numpy(array, binary_data=binary)
        else:
            t.set_data_from_numpy(array)
        tensors.append(t)
    outputs = None
    if output_names is not None:
        if module is httpclient:
            outputs = [module.InferRequestedOutput(n, binary_data=binary) for n in output_names]
        else:
            outputs = [module.InferRequestedOutput(n) for n in output_names]
    return client.infer(model, tensors, outputs=outputs, request_id="req-42")


def metrics(url):
    """{(name, frozenset of label pairs): value} from the Prometheus text format."""
    text = urllib.request.urlopen(f"http://{url}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            name, _, labels = key.partition("{")
            pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
            values[(name, pairs)] = float(value)
    return values


def metric(values, name, model, **labels):
    return values.get((name, frozenset({"model": model, "version": "1", **labels}.items())), 0.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--models", required=True, type=pathlib.Path)
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--batch-delay-us", type=int, required=True)
    args = parser.parse_args()

    http = httpclient.InferenceServerClient(args.http, concurrency=32, network_timeout=120)
    grpc = grpcclient.InferenceServerClient(args.grpc)

    # Health, readiness (strict: the broken model keeps the server from being ready), metadata.
    for proto, client in (("http", http), ("grpc", grpc)):
        run_check(f"{proto}: live", lambda: (client.is_server_live(), ""))
        run_check(f"{proto}: server not ready while a model failed", lambda: (not client.is_server_ready(), ""))
        run_check(f"{proto}: mlp ready, broken not", lambda: (
            client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
            and not client.is_model_ready("broken") and not client.is_model_ready("nope"), ""))

    def server_metadata():
        h, g = http.get_server_metadata(), grpc.get_server_metadata(as_json=True)
        ok = h["name"] == g["name"] == "rivet" and "binary_tensor_data" in h["extensions"]
        return ok, h
    run_check("server metadata", server_metadata)

    def model_metadata():
        h = http.get_model_metadata("encoder")
        g = grpc.get_model_metadata("encoder", as_json=True)
        want = [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
                {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}]
        g_inputs = [{**t, "shape": [int(d) for d in t["shape"]]} for t in g["inputs"]]
        ok = h["inputs"] == want and g_inputs == want and h["outputs"][0]["shape"] == [-1, -1, 32]
        ok = ok and h["platform"] == "onnxruntime_onnx" and h["versions"] == ["1"]
        return ok, h
    run_check("model metadata (HTTP and gRPC)", model_metadata)

    def model_config():
        h = http.get_model_config("mlp_batched")
        g = grpc.get_model_config("mlp_batched", as_json=True)["config"]
        ok = h["max_batch_size"] == 8 == g["max_batch_size"]
        ok = ok and h["input"][0]["dims"] == [16] and [int(d) for d in g["input"][0]["dims"]] == [16]
        ok = ok and g["input"][0]["data_type"] == "TYPE_FP32" == h["input"][0]["data_type"]
        ok = ok and h["dynamic_batching"]["max_queue_delay_microseconds"] == args.batch_delay_us
        return ok, h
    run_check("model config (HTTP and gRPC)", model_config)

    # Every bundled model's PyTorch reference cases, JSON and binary, HTTP and gRPC.
    served = {"mlp": "mlp", "cnn": "cnn", "encoder": "encoder", "mlp_tch": "mlp", "cnn_candle": "cnn"}
    for model, bundled in served.items():
        for case, ins, outs in cases(args.models, bundled):
            for proto, client, module, binary in (("http-json", http, httpclient, False),
                                                  ("http-binary", http, httpclient, True),
                                                  ("grpc", grpc, grpcclient, True)):
                def one():
                    result = infer(client, module, model, ins, binary, list(outs))
                    response = result.get_response()
                    rid = response["id"] if module is httpclient else response.id
                    if rid != "req-42":
                        return False, f"request id not echoed: {rid!r}"
                    for name, want in outs.items():
                        ok, detail = close(result.as_numpy(name), want)
                        if not ok:
                            return False, f"{name}: {detail}"
                    return True, detail
                run_check(f"{proto}: {model} case {case}", one)

    # A tensor over 4 MB each way (tonic's and axum's default limits), against torch.jit.
    big = np.random.default_rng(7).standard_normal((70000, 16)).astype(np.float32)
    with torch.no_grad():
        big_want = torch.jit.load(str(args.models / "mlp" / "mlp.pt"))(torch.from_numpy(big)).numpy()
    for proto, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
        run_check(f"{proto}: 4.5 MB input", lambda: close(
            infer(client, module, "mlp", {"features": big}, True).as_numpy("logits"), big_want))

    # Errors: the server's message reaches the client's exception.
    x = np.zeros((1, 15), np.float32)
    for proto, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
        run_check(f"{proto}: unknown model", lambda: raises(
            lambda: infer(client, module, "nope", {"features": x}, True), 'model "nope" is not in the repository'))
        run_check(f"{proto}: wrong shape", lambda: raises(
            lambda: infer(client, module, "mlp", {"features": x}, True), '"features"', "16", "15"))
        run_check(f"{proto}: unknown input", lambda: raises(
            lambda: infer(client, module, "mlp", {"feature": np.zeros((1, 16), np.float32)}, True), '"feature"'))
        run_check(f"{proto}: broken model", lambda: raises(
            lambda: infer(client, module, "broken", {"features": x}, True), 'model "broken" is not ready'))
        run_check(f"{proto}: over max_batch_size", lambda: raises(
            lambda: infer(client, module, "mlp_batched", {"features": np.zeros((9, 16), np.float32)}, True),
            "batch size 9 is not between 1 and max_batch_size 8"))

    # Dynamic batching: 32 concurrent requests with inputs of their own, each answered right.
    mlp = torch.jit.load(str(args.models / "mlp" / "mlp.pt"))
    before = metrics(args.metrics)
    rng = np.random.default_rng(11)
    requests = [rng.standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(32)]
    with torch.no_grad():
        wanted = [mlp(torch.from_numpy(r)).numpy() for r in requests]
    results = [None] * 32

    # Odd requests over gRPC from threads (its client is thread-safe); even ones through the
    # HTTP client's own async pool (it is not).
    def send(i):
        try:
            results[i] = infer(grpc, grpcclient, "mlp_batched", {"features": requests[i]}, True).as_numpy("logits")
        except Exception as e:  # noqa: BLE001
            results[i] = e
    threads = [threading.Thread(target=send, args=(i,)) for i in range(1, 32, 2)]
    pending = {}
    for i in range(0, 32, 2):
        t = httpclient.InferInput("features", list(requests[i].shape), "FP32")
        t.set_data_from_numpy(requests[i], binary_data=True)
        pending[i] = http.async_infer("mlp_batched", [t])
    for t in threads:
        t.start()
    for i, request in pending.items():
        try:
            results[i] = request.get_result().as_numpy("logits")
        except Exception as e:  # noqa: BLE001
            results[i] = e
    for t in threads:
        t.join()
    after = metrics(args.metrics)
    bad = [i for i in range(32) if not isinstance(results[i], np.ndarray) or not close(results[i], wanted[i])[0]]
    report("batching: 32 concurrent requests each answered with their own outputs", not bad,
           f"wrong: {bad}" if bad else "all 32 match torch.jit")
    count = metric(after, "nv_inference_count", "mlp_batched") - metric(before, "nv_inference_count", "mlp_batched")
    execs = metric(after, "nv_inference_exec_count", "mlp_batched") - metric(
        before, "nv_inference_exec_count", "mlp_batched")
    rows = sum(r.shape[0] for r in requests)
    report("batching: inference count / exec count shows batches formed", count == rows and execs < 32,
           f"{count:.0f} inferences in {execs:.0f} executions ({count / max(execs, 1):.2f} per execution)")
    hist = "rivet_inference_batch_size_bucket"
    le8 = metric(after, hist, "mlp_batched", le="8")
    total = metric(after, "rivet_inference_batch_size_count", "mlp_batched")
    report("batching: no batch over max_batch_size 8", total > 0 and le8 == total,
           f"{le8:.0f} of {total:.0f} executions had 8 rows or fewer")

    # A lone request waits at most the queue delay before it runs (server-side queue time).
    before = metrics(args.metrics)
    infer(http, httpclient, "mlp_batched", {"features": requests[0]}, True)
    after = metrics(args.metrics)
    queued = metric(after, "nv_inference_queue_duration_us", "mlp_batched") - metric(
        before, "nv_inference_queue_duration_us", "mlp_batched")
    # The timer ticks in whole milliseconds, and a loaded 2-core machine adds scheduling delay.
    report("batching: a lone request runs after the queue delay, not later",
           args.batch_delay_us <= queued + 1000 and queued < args.batch_delay_us + 250_000,
           f"queued {queued:.0f} us with max_queue_delay_us {args.batch_delay_us}")

    # perf_analyzer over HTTP and gRPC, concurrency 1 and 8: exits 0, and its counts match the
    # server's: in each window the client's request count equals the successful requests the
    # statistics extension reports (give or take the requests in flight at the window's edges),
    # and the /metrics totals grow by at least the requests it measured, with no failures.
    for proto, url in (("http", args.http), ("grpc", args.grpc)):
        before = metrics(args.metrics)
        run = subprocess.run(
            [args.perf_analyzer, "-m", "mlp_batched", "-u", url, "-i", proto, "--concurrency-range", "1:8:7",
             "--measurement-mode", "count_windows", "--measurement-request-count", "200",
             "--max-trials", "4", "--stability-percentage", "999"],
            capture_output=True, text=True, timeout=300,
            env={"LD_LIBRARY_PATH": str(pathlib.Path(args.perf_analyzer).parent)})
        after = metrics(args.metrics)
        clients = [int(n) for n in re.findall(r"Client: \n\s+Request count: (\d+)", run.stdout)]
        servers = [int(n) for n in re.findall(r"Successful request count: (\d+)", run.stdout)]
        grew = metric(after, "nv_inference_request_success", "mlp_batched") - metric(
            before, "nv_inference_request_success", "mlp_batched")
        failed = metric(after, "nv_inference_request_failure", "mlp_batched") - metric(
            before, "nv_inference_request_failure", "mlp_batched")
        # A window's two edges each cut through the requests in flight: up to `concurrency` of
        # them may be counted on one side only, at each edge of each of the (up to three)
        # windows perf_analyzer merges into what it reports.
        agree = all(abs(c - s) <= 2 * 3 * concurrency for c, s, concurrency in zip(clients, servers, (1, 8)))
        ok = run.returncode == 0 and len(clients) == len(servers) == 2 and agree and grew >= sum(clients)
        ok = ok and failed == 0
        detail = (f"exit {run.returncode}; client counts {clients}, server counts {servers}, "
                  f"/metrics successes +{grew:.0f}, failures +{failed:.0f}")
        if run.returncode != 0:
            detail += "; " + (run.stderr or run.stdout)[-800:]
        report(f"perf_analyzer over {proto}, concurrency 1 and 8", ok, detail)

    print(json.dumps({"summary": {"failed": failures}}), flush=True)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
