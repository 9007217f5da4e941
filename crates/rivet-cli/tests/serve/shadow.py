"""Drives `rivet serve` models that have a `[shadow]` with Triton's clients, and prints one JSON
line per check (as clients.py does). Run by crates/rivet-cli/tests/serve.rs, which writes the
repository (see `shadow_repository` there):

- mlp (ORT) shadowed by mlp_tch (libtorch): twins, every request matches at atol 1e-5;
- mlp_main (ORT) shadowed by mlp_perturbed (one bias moved by 0.05): every request diverges and
  is captured under --captures;
- mlp_err shadowed by mlp_b1 (max_batch_size 1): the shadow fails on a batch of 2;
- mlp_fast shadowed by mlp_slow (a 10 s queue delay) with a shadow queue of 1: the first
  comparison waits, the rest are dropped;
- mlp_batched shadowed by mlp_tch_batched, dynamic batching on both sides.

Callers must get the primary's answers (the PyTorch references) whatever the shadow does.
"""

import argparse
import json
import pathlib
import threading
import time

import numpy as np
import onnxruntime
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients import close, infer, metrics, report, run_check

OUTCOMES = ("match", "diverged", "error", "dropped")


def outcomes(url, model, shadow):
    values = metrics(url)
    return {o: values.get(("rivet_shadow_comparisons_total",
                           frozenset({"model": model, "shadow": shadow, "outcome": o}.items())), 0.0)
            for o in OUTCOMES}


def settled(url, model, shadow, total):
    """The outcome counts once `total` requests are accounted for (comparisons finish after the
    answers, on the shadow's side); gives up after a minute, returning what it has."""
    deadline = time.monotonic() + 60
    while True:
        counts = outcomes(url, model, shadow)
        if sum(counts.values()) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--models", required=True, type=pathlib.Path)
    parser.add_argument("--captures", required=True, type=pathlib.Path)
    args = parser.parse_args()

    http = httpclient.InferenceServerClient(args.http, concurrency=32, network_timeout=120)
    grpc = grpcclient.InferenceServerClient(args.grpc)
    protocols = (("http", http, httpclient), ("grpc", grpc, grpcclient))
    mlp = torch.jit.load(str(args.models / "mlp" / "mlp.pt"))
    rng = np.random.default_rng(5)
    requests = [rng.standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(12)]
    with torch.no_grad():
        wanted = [mlp(torch.from_numpy(r)).numpy() for r in requests]

    def answers_are_the_primarys(model, proto_of=lambda i: protocols[i % 2]):
        """Sends every request (alternating HTTP and gRPC); each answer must be the reference."""
        bad = []
        for i, x in enumerate(requests):
            _, client, module = proto_of(i)
            got = infer(client, module, model, {"features": x}, True).as_numpy("logits")
            if not close(got, wanted[i])[0]:
                bad.append(i)
        return not bad, f"wrong answers: {bad}" if bad else "all 12 equal the primary's reference"

    # Twins: every request compared, all match, and the latency of both sides recorded.
    run_check("twins: callers get the primary's answers", lambda: answers_are_the_primarys("mlp"))
    counts = settled(args.metrics, "mlp", "mlp_tch", len(requests))
    report("twins: 12 of 12 compared and matched at atol 1e-5", counts["match"] == 12 and
           counts["diverged"] == counts["error"] == counts["dropped"] == 0, counts)
    values = metrics(args.metrics)
    seconds = {side: values.get(("rivet_shadow_request_duration_seconds_count",
                                 frozenset({"model": "mlp", "shadow": "mlp_tch", "side": side}.items())), 0.0)
               for side in ("primary", "candidate")}
    report("twins: primary and shadow latency histograms count every request",
           seconds == {"primary": 12, "candidate": 12}, seconds)
    diff = {le: values.get(("rivet_shadow_max_abs_diff_bucket",
                            frozenset({"model": "mlp", "shadow": "mlp_tch", "le": le}.items())), -1.0)
            for le in ("0.00001", "+Inf")}
    report("twins: every max |diff| is within 1e-5", diff == {"0.00001": 12, "+Inf": 12}, diff)

    # The perturbed twin: every request diverges; each capture reproduces its figures.
    run_check("perturbed: callers get the primary's answers", lambda: answers_are_the_primarys("mlp_main"))
    counts = settled(args.metrics, "mlp_main", "mlp_perturbed", len(requests))
    report("perturbed: 12 of 12 diverged", counts["diverged"] == 12 and counts["match"] == 0, counts)
    values = metrics(args.metrics)
    diff = {le: values.get(("rivet_shadow_max_abs_diff_bucket",
                            frozenset({"model": "mlp_main", "shadow": "mlp_perturbed", "le": le}.items())), -1.0)
            for le in ("0.01", "0.1")}
    report("perturbed: every max |diff| is between 0.01 and 0.1 (the bias moved by 0.05)",
           diff == {"0.01": 0, "0.1": 12}, diff)

    def captures():
        session = onnxruntime.InferenceSession(str(args.models / "mlp" / "shadow" / "mlp_perturbed.onnx"))
        folders = sorted(p for p in args.captures.iterdir() if p.is_dir())
        problems = []
        for folder in folders:
            record = json.loads((folder / "record.json").read_text())
            x = np.load(folder / "input_0.npy")
            primary = np.load(folder / "primary.logits.npy")
            candidate = np.load(folder / "candidate.logits.npy")
            with torch.no_grad():
                reference = mlp(torch.from_numpy(x)).numpy()
            rerun = session.run(None, {"features": x})[0]
            figures = record["outputs"][0]
            if record["request_id"] != "req-42":
                problems.append(f"{folder.name}: request id {record['request_id']!r}")
            if not close(primary, reference)[0] or not np.allclose(candidate, rerun, rtol=1e-5, atol=1e-5):
                problems.append(f"{folder.name}: the captured outputs are not the models' on its input")
            if abs(float(np.max(np.abs(candidate.astype(np.float64) - primary))) - figures["max_abs_diff"]) > 1e-9:
                problems.append(f"{folder.name}: max_abs_diff {figures['max_abs_diff']} does not reproduce")
            # atol 1e-5, rtol 0, as the repository configures mlp_main's shadow.
            outside = int(np.sum(np.abs(candidate.astype(np.float64) - primary) > 1e-5))
            if figures["outside"] != outside or outside == 0:
                problems.append(f"{folder.name}: {figures['outside']} outside, the files give {outside}")
            argmax = float(np.mean(np.argmax(candidate, axis=1) != np.argmax(primary, axis=1)))
            if abs(figures["argmax_mismatch"] - argmax) > 1e-12:
                problems.append(f"{folder.name}: argmax mismatch {figures['argmax_mismatch']}, the files give {argmax}")
        ok = len(folders) == 12 and not problems
        return ok, f"{len(folders)} captures; {problems[:3]}"
    run_check("perturbed: 12 captures, each with inputs and both outputs reproducing its figures", captures)

    # A shadow that fails: counted as an error; the caller never sees it.
    x2, want2 = requests[1], wanted[1]  # two rows: over the shadow's max_batch_size 1
    for proto, client, module in protocols:
        run_check(f"{proto}: a failing shadow does not reach the caller",
                  lambda: close(infer(client, module, "mlp_err", {"features": x2}, True).as_numpy("logits"), want2))
    counts = settled(args.metrics, "mlp_err", "mlp_b1", 2)
    report("failing shadow: 2 errors counted", counts["error"] == 2 and counts["match"] == 0, counts)

    # A slow shadow with room for one comparison: the first waits out its queue delay, every
    # later request is dropped, and the callers are answered at once all the same.
    run_check("slow shadow: callers get the primary's answers", lambda: answers_are_the_primarys("mlp_fast"))
    dropped = outcomes(args.metrics, "mlp_fast", "mlp_slow")
    # Had a caller waited for the shadow, its comparison would have finished and made room for
    # the next: eleven drops mean none did.
    report("slow shadow: 11 of 12 dropped while the first waits, callers not held up",
           dropped["dropped"] == 11 and dropped["match"] == 0, dropped)
    counts = settled(args.metrics, "mlp_fast", "mlp_slow", len(requests))
    report("slow shadow: the one admitted is compared once it runs",
           counts["match"] == 1 and counts["dropped"] == 11, counts)

    # Dynamic batching on both sides: comparisons per request, not per batch.
    before = metrics(args.metrics)
    results = [None] * 32
    batch_requests = [requests[i % 12] for i in range(32)]

    def send(i):
        _, client, module = protocols[1]
        try:
            results[i] = infer(client, module, "mlp_batched", {"features": batch_requests[i]}, True).as_numpy("logits")
        except Exception as e:  # noqa: BLE001
            results[i] = e
    threads = [threading.Thread(target=send, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [i for i in range(32) if not isinstance(results[i], np.ndarray) or not close(results[i], wanted[i % 12])[0]]
    report("batched shadow: 32 concurrent requests answered by the primary", not bad, f"wrong: {bad}")
    counts = settled(args.metrics, "mlp_batched", "mlp_tch_batched", 32)
    after = metrics(args.metrics)

    def execs(model):
        key = ("nv_inference_exec_count", frozenset({"model": model, "version": "1"}.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)
    report("batched shadow: 32 comparisons, one per request, all matching",
           counts["match"] == 32 and sum(counts.values()) == 32, counts)
    report("batched shadow: both sides formed batches",
           0 < execs("mlp_batched") < 32 and 0 < execs("mlp_tch_batched") < 32,
           f"{execs('mlp_batched'):.0f} primary and {execs('mlp_tch_batched'):.0f} shadow executions")

    print(json.dumps({"summary": {"failed": 0}}), flush=True)


if __name__ == "__main__":
    main()
