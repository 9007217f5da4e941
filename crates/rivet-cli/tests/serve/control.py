"""Model control and versions through Triton's clients, one JSON line per check (as clients.py).
Run by crates/rivet-cli/tests/serve.rs against one of two servers it starts:

--phase explicit: `--model-control-mode explicit --load-model mlp` over a repository with mlp,
  cnn (not loaded), versioned (folders 1/ = the MLP, 2/ = its perturbed twin, version_policy
  "all") and swap (the MLP, to be broken on disk by this script through --repository).
--phase poll: `--model-control-mode poll` over a repository whose live/model.onnx this script
  replaces while perf_analyzer runs, then breaks.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import time

import numpy as np
import onnxruntime
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients import close, infer, metrics, raises, report, run_check


def index_of(client, module):
    if module is httpclient:
        return client.get_model_repository_index()
    return json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(
        client.get_model_repository_index(), preserving_proto_field_name=True)).get("models", [])


def until(condition, what, seconds=60):
    """Waits for `condition()` (a change the server makes on its own schedule) up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {seconds} s")


def replace(path, source):
    """Replaces `path` by a copy of `source` in one rename, as a deployment should."""
    tmp = path.with_name(".incoming")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--models", required=True, type=pathlib.Path)
    parser.add_argument("--repository", required=True, type=pathlib.Path)
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--phase", required=True, choices=["explicit", "poll"])
    args = parser.parse_args()

    http = httpclient.InferenceServerClient(args.http, network_timeout=120)
    grpc = grpcclient.InferenceServerClient(args.grpc)
    mlp = torch.jit.load(str(args.models / "mlp" / "mlp.pt"))
    perturbed_onnx = args.models / "mlp" / "shadow" / "mlp_perturbed.onnx"
    perturbed = onnxruntime.InferenceSession(str(perturbed_onnx))
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    with torch.no_grad():
        want = mlp(torch.from_numpy(x)).numpy()
    want_perturbed = perturbed.run(None, {"features": x})[0]
    protocols = (("http", http, httpclient), ("grpc", grpc, grpcclient))

    def answer(model, client=grpc, module=grpcclient, version=""):
        inputs = [module.InferInput("features", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        return client.infer(model, inputs, model_version=version).as_numpy("logits")

    if args.phase == "explicit":
        def index_at_start():
            got = {(m["name"], m.get("version", "")): (m["state"], m.get("reason", "")) for m in index_of(http, httpclient)}
            ok = got.get(("mlp", "1"), ("",))[0] == "READY" and got.get(("cnn", "")) == ("UNAVAILABLE", "not loaded")
            return ok, got
        run_check("index: mlp ready, cnn not loaded", index_at_start)
        run_check("a model not loaded answers 503 / UNAVAILABLE", lambda: raises(
            lambda: answer("cnn", http, httpclient), 'model "cnn" is unavailable: not loaded'))
        image = np.load(sorted((args.models / "cnn" / "cases").iterdir())[0] / "input.image.npy")
        logits = np.load(sorted((args.models / "cnn" / "cases").iterdir())[0] / "output.logits.npy")

        def load_then_infer(client, module):
            client.load_model("cnn")
            got = infer(client, module, "cnn", {"image": image}, True).as_numpy("logits")
            return close(got, logits)
        run_check("http: load_model, then the model answers", lambda: load_then_infer(http, httpclient))
        run_check("grpc: unload_model, then 503 with the reason", lambda: (
            grpc.unload_model("cnn") is None and raises(lambda: answer("cnn"), "unavailable: unloaded")[0], "unloaded"))
        run_check("grpc: load_model again", lambda: load_then_infer(grpc, grpcclient))
        for proto, client, module in protocols:
            run_check(f"{proto}: loading a model that is not in the repository", lambda: raises(
                lambda: client.load_model("nope"), 'model "nope" is not in the repository'))

        # Versions: folder 1 is the MLP, folder 2 its perturbed twin, version_policy "all".
        http.load_model("versioned")
        run_check("versions: metadata lists both", lambda: (
            http.get_model_metadata("versioned")["versions"] == ["1", "2"], http.get_model_metadata("versioned")))
        for proto, client, module in protocols:
            run_check(f"{proto}: version 1 is the MLP", lambda: close(answer("versioned", client, module, "1"), want))
            run_check(f"{proto}: version 2 is the perturbed twin", lambda: close(
                answer("versioned", client, module, "2"), want_perturbed))
            run_check(f"{proto}: no version: the latest", lambda: close(answer("versioned", client, module), want_perturbed))
            run_check(f"{proto}: a version not served", lambda: raises(
                lambda: answer("versioned", client, module, "3"), 'has no version "3" (served: "1", "2")'))

        # A shadow follows its candidate: absent at start (front serves alone), attached once the
        # candidate loads, detached when it unloads.
        def comparisons():
            return sum(v for (name, labels), v in metrics(args.metrics).items()
                       if name == "rivet_shadow_comparisons_total" and ("model", "front") in labels)
        run_check("shadow: front serves while its candidate is not loaded", lambda: close(answer("front"), want))
        before = comparisons()
        http.load_model("twin")
        for _ in range(3):
            answer("front")
        run_check("shadow: attached once the candidate loads", lambda: (
            until(lambda: comparisons() - before == 3, "3 comparisons") is True, f"{comparisons() - before:.0f} compared"))
        grpc.unload_model("twin")
        after = comparisons()
        run_check("shadow: detached when the candidate unloads, front still answers", lambda: (
            close(answer("front"), want)[0] and comparisons() == after, f"{comparisons() - after:.0f} compared"))

        # A broken replacement: the load fails with the reason, the old model keeps serving.
        http.load_model("swap")
        (args.repository / "swap" / "model.onnx").unlink()
        (args.repository / "swap" / "model.onnx").write_bytes(b"not a model")
        run_check("a broken reload fails, naming why", lambda: raises(
            lambda: grpc.load_model("swap"), "version 1 failed to reload, the previous one serves"))
        run_check("the previous version still answers", lambda: close(answer("swap"), want))

        def reason_in_index():
            entry = next(m for m in index_of(grpc, grpcclient) if m["name"] == "swap")
            return entry["state"] == "READY" and "failed to reload" in entry.get("reason", ""), entry
        run_check("the index keeps it READY with the reason", reason_in_index)
    else:
        live = args.repository / "live" / "model.onnx"
        # perf_analyzer at concurrency 4 throughout the swap.
        env = {"LD_LIBRARY_PATH": str(pathlib.Path(args.perf_analyzer).parent)}
        data = args.repository.parent / "live-input.json"
        data.write_text(json.dumps({"data": [{"features": x[:1].ravel().tolist()}]}))
        run = subprocess.Popen(
            [args.perf_analyzer, "-m", "live", "-u", args.grpc, "-i", "grpc", "--shape", "features:1,16",
             "--input-data", str(data), "--concurrency-range", "4", "-p", "3000", "--max-trials", "3",
             "--stability-percentage", "999"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

        def successes():
            return metrics(args.metrics).get(
                ("nv_inference_request_success", frozenset({"model": "live", "version": "1"}.items())), 0.0)
        try:
            until(lambda: successes() > 100, "perf_analyzer's requests")
            replace(live, perturbed_onnx)
            switched = until(lambda: close(answer("live"), want_perturbed)[0], "the answers switching", 60)
            report("poll: the replaced file serves within the poll", switched, "answers now the perturbed twin's")
        finally:
            out, _ = run.communicate(timeout=300)
        failures = metrics(args.metrics).get(
            ("nv_inference_request_failure", frozenset({"model": "live", "version": "1"}.items())), 0.0)
        report("poll: perf_analyzer at concurrency 4 through the swap: exit 0, no failed request",
               run.returncode == 0 and failures == 0 and "error" not in out.lower(),
               f"exit {run.returncode}, failures {failures:.0f}; {out[-600:]}")

        (args.repository / "live" / ".broken").write_bytes(b"not a model")
        os.replace(args.repository / "live" / ".broken", live)

        def broken_in_index():
            entry = next(m for m in index_of(http, httpclient) if m["name"] == "live")
            return entry if "failed to reload" in entry.get("reason", "") else None
        try:
            entry = until(broken_in_index, "the failed reload in the index")
            report("poll: a broken replacement is reported in the index", entry["state"] == "READY", entry)
        except TimeoutError as e:
            report("poll: a broken replacement is reported in the index", False, e)
        run_check("poll: the previous model keeps serving", lambda: close(answer("live"), want_perturbed))

        # A new folder loads; a removed one leaves the index.
        shutil.copytree(args.repository / "live", args.repository / ".staging")
        replace(args.repository / ".staging" / "model.onnx", args.models / "mlp" / "mlp.onnx")
        os.rename(args.repository / ".staging", args.repository / "added")
        run_check("poll: a new folder loads", lambda: (
            until(lambda: any(m["name"] == "added" and m["state"] == "READY" for m in index_of(grpc, grpcclient)),
                  "the new model") and close(answer("added"), want)[0], "added answers as the MLP"))
        shutil.rmtree(args.repository / "added")
        run_check("poll: a removed folder leaves", lambda: (
            until(lambda: not any(m["name"] == "added" for m in index_of(http, httpclient)), "the removal"),
            "gone from the index"))
        run_check("poll: load and unload are refused", lambda: raises(
            lambda: http.load_model("live"), "the model control mode is poll"))
    print(json.dumps({"summary": {"phase": args.phase}}), flush=True)


if __name__ == "__main__":
    main()
