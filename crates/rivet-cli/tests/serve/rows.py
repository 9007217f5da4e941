"""Raw rows through `rivet serve`: the tabular example served with its fitted pipeline, one input
per raw column, checked against `rivet predict` on the same rows. One JSON line per check (as
clients.py). Run by crates/rivet-cli/tests/serve.rs, which writes --rows (a CSV from
models/tabular/generate.py) and --predictions (`rivet predict` of it).
"""

import argparse
import json
import pathlib
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from clients import raises, report, run_check

COLUMNS = ["signup_ts", "age", "income", "balance", "tenure_months", "num_products", "region", "plan"]
DATATYPES = {"signup_ts": "BYTES", "age": "FP64", "income": "FP64", "balance": "FP64", "tenure_months": "INT64",
             "num_products": "INT64", "region": "BYTES", "plan": "BYTES"}


def columns_of(table):
    """Each raw column as the array tritonclient sends: text as objects, the rest as numbers."""
    out = {}
    for name in COLUMNS:
        if DATATYPES[name] == "BYTES":
            out[name] = table[name].astype(str).to_numpy(dtype=np.object_)
        elif DATATYPES[name] == "INT64":
            out[name] = table[name].to_numpy(dtype=np.int64)
        else:
            out[name] = table[name].to_numpy(dtype=np.float64)
    return out


def send(client, module, columns, binary=True):
    inputs = []
    for name, values in columns.items():
        t = module.InferInput(name, [len(values)], DATATYPES.get(name, "BYTES"))
        if module is httpclient:
            t.set_data_from_numpy(values, binary_data=binary)
        else:
            t.set_data_from_numpy(values)
        inputs.append(t)
    return client.infer("churn", inputs).as_numpy("churn_probability")


def pandas_request(table):
    """The request MLServer's pandas codec makes of a DataFrame: content type "pd", one input per
    column of shape [rows, 1], text as BYTES with content type "str", missing numbers as null."""
    inputs = []
    for name in COLUMNS:
        values = table[name]
        if DATATYPES[name] == "BYTES":
            data = values.astype(str).tolist()
            inputs.append({"name": name, "shape": [len(data), 1], "datatype": "BYTES", "data": data,
                           "parameters": {"content_type": "str"}})
        else:
            data = [None if pd.isna(v) else (int(v) if DATATYPES[name] == "INT64" else float(v)) for v in values]
            inputs.append({"name": name, "shape": [len(data), 1], "datatype": DATATYPES[name], "data": data})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--models", required=True, type=pathlib.Path)
    parser.add_argument("--rows", required=True, type=pathlib.Path)
    parser.add_argument("--predictions", required=True, type=pathlib.Path)
    args = parser.parse_args()

    http = httpclient.InferenceServerClient(args.http, network_timeout=120)
    grpc = grpcclient.InferenceServerClient(args.grpc)
    table = pd.read_csv(args.rows)
    want = pd.read_csv(args.predictions)["churn_probability"].to_numpy(dtype=np.float64).reshape(-1, 1)

    def agree(got, expected):
        got = np.asarray(got, dtype=np.float64).reshape(expected.shape)
        diff = float(np.max(np.abs(got - expected)))
        return diff <= 1e-6, f"max abs diff {diff:.3g} over {len(expected)} rows"

    def metadata():
        h = http.get_model_metadata("churn")
        got = {t["name"]: (t["datatype"], t["shape"]) for t in h["inputs"]}
        return got == {n: (DATATYPES[n], [-1]) for n in COLUMNS}, h["inputs"]
    run_check("metadata lists the raw columns", metadata)

    columns = columns_of(table)
    run_check("http binary: columns give rivet predict's predictions", lambda: agree(send(http, httpclient, columns), want))
    # tritonclient writes a missing number into JSON as NaN, which JSON does not have (binary
    # data carries it; MLServer's codec below sends null): the rows without one.
    complete = table.notna().all(axis=1).to_numpy()
    run_check("http JSON: columns give rivet predict's predictions", lambda: agree(
        send(http, httpclient, columns_of(table[complete]), binary=False), want[complete]))
    run_check("grpc: columns give rivet predict's predictions", lambda: agree(send(grpc, grpcclient, columns), want))
    # Row by row: each request alone through the batcher.
    run_check("grpc: one row at a time, the same", lambda: agree(
        [send(grpc, grpcclient, {k: v[i:i + 1] for k, v in columns.items()})[0] for i in range(8)], want[:8]))

    def pandas():
        status, body = post(f"http://{args.http}/v2/models/churn/infer", pandas_request(table))
        if status != 200:
            return False, body
        return agree(body["outputs"][0]["data"], want)
    run_check("content type pd (MLServer's pandas codec) gives the same", pandas)


    unseen = table.head(3).copy()
    unseen.loc[1, "plan"] = "platinum"
    for proto, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
        run_check(f"{proto}: an unseen plan gets the pipeline's message", lambda: raises(
            lambda: send(client, module, columns_of(unseen)), "platinum", "plan", "400" if module is httpclient else "INVALID_ARGUMENT"))
        missing = {k: v for k, v in columns_of(table.head(3)).items() if k != "region"}
        run_check(f"{proto}: a missing column is named", lambda: raises(
            lambda: send(client, module, missing), 'missing column "region"'))
    status, body = post(f"http://{args.http}/v2/models/churn/infer",
                        {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
    report("a feature tensor instead of columns is refused, naming the columns",
           status == 400 and 'unknown column "features"' in body.get("error", ""), body)
    print(json.dumps({"summary": {"rows": len(table)}}), flush=True)


if __name__ == "__main__":
    main()
