"""Writes the minimal tables of pandas_rules.rs and what pandas and scikit-learn make of them.

usage: pandas_rules.py OUT_DIR  ->  OUT_DIR/*.csv, *.parquet and OUT_DIR/expected.json
"""

import json
import math
import pathlib
import sys
from fractions import Fraction

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

out = pathlib.Path(sys.argv[1])
expected = {"na_values": sorted(STR_NA_VALUES)}

# 1. StandardScaler decides "constant" from the variance relative to the mean.
tiny = pd.DataFrame({"x": [1e-16, 2e-16, 3e-16], "c": [5.0, 5.0, 5.0], "near": [1.0, 1.0 + 2e-16, 1.0]})
tiny.to_csv(out / "tiny.csv", index=False)
scaler = StandardScaler().fit(tiny)
expected["tiny"] = {"scale": scaler.scale_.tolist(), "output": scaler.transform(tiny).tolist()}

# 2. A large offset: 1e12 + N(0, 100^2) over 20,000 rows, as CSV and as Parquet in row groups.
rng = np.random.default_rng(33)
offset = pd.DataFrame({"x": 1e12 + rng.normal(0, 100, 20_000)})
offset.to_csv(out / "offset.csv", index=False)
offset.to_parquet(out / "offset.parquet", index=False, row_group_size=3_000)
scaler = StandardScaler().fit(offset)
# The exact statistics, in rationals: scikit-learn's own mean is a few units in the last place
# off them here (numpy's pairwise sum), which moves its outputs by about 2e-6.
exact = [Fraction(v) for v in offset["x"]]
exact_mean = sum(exact) / len(exact)
exact_var = sum((v - exact_mean) ** 2 for v in exact) / len(exact)
exact_std = math.sqrt(exact_var)
expected["offset"] = {
    "mean": float(scaler.mean_[0]),
    "var": float(scaler.var_[0]),
    "output": scaler.transform(offset)[:, 0].tolist(),
    "exact_mean": float(exact_mean),
    "exact_var": float(exact_var),
    "exact_output": [float(v - exact_mean) / exact_std for v in exact],
}

# 5. Whole numbers for 66,000 rows, then 2.5: pandas reads the column as floats.
rows = [str(i % 1000) for i in range(66_000)] + ["2.5"] + [str(i) for i in range(500)]
(out / "late_float.csv").write_text("x\n" + "\n".join(rows) + "\n")
late = pd.read_csv(out / "late_float.csv")
expected["late_float"] = {"dtype": str(late["x"].dtype), "sum": float(late["x"].sum())}

# 6. pandas' reading rules: NA spellings, spaces around numbers, timestamps with offsets.
text = (
    "n,cat,ts\n"
    " 7.5,NA,2024-03-10 10:00:00+0530\n"
    "8 ,None,2024-03-10 10:00:00+05\n"
    "null,a,2024-03-10 10:00:00 +05:30\n"
    "NaN,n/a,2024-03-10T23:30:00-0200\n"
    "-1.5e3,<NA>,2024-03-10 10:00:00Z\n"
    "#N/A,b,2024-03-10 10:00\n"
)
(out / "rules.csv").write_text(text)
rules = pd.read_csv(out / "rules.csv")
stamps = pd.to_datetime(rules["ts"], format="ISO8601", utc=True)
expected["rules"] = {
    "n": [None if pd.isna(v) else float(v) for v in rules["n"]],
    "cat": [None if pd.isna(v) else str(v) for v in rules["cat"]],
    "hour": stamps.dt.hour.tolist(),
    "day": stamps.dt.day.tolist(),
    "minute": stamps.dt.minute.tolist(),
}

# Random tables for the property test: offsets 0 to 1e12, spreads 1e-300 to 1e150 (past about
# 1e154 the variance overflows f64, and Rivet refuses such a column; a test checks that), NaNs,
# ties, repeated and unicode categories, NA strings and spaces, each fitted by scikit-learn.
cases = []
words = ["a", "b", "Zürich", "東京", "b ", "ñ", "NA", "x y"]
for k in range(12):
    n = int(rng.integers(5, 400))
    scale = 10.0 ** rng.uniform(-300, 150) if k % 3 else 10.0 ** rng.uniform(-3, 3)
    base = [0.0, 1e12, -3e6][k % 3]
    x = base + rng.normal(0, 1, n) * scale
    y = rng.integers(-3, 4, n).astype(float)              # ties
    x[rng.random(n) < 0.1] = np.nan
    cat = rng.choice(words, n)
    df = pd.DataFrame({"x": x, "y": y, "cat": cat})
    name = f"random{k}.csv"
    # NA spellings and spaces in the CSV text itself.
    lines = ["x,y,cat"]
    for xv, yv, cv in zip(x, y, cat):
        xs = rng.choice(["", "NaN", "null", "NA"]) if np.isnan(xv) else (" " if k % 2 else "") + repr(float(xv))
        lines.append(f"{xs},{float(yv)!r},\"{cv}\"")
    (out / name).write_text("\n".join(lines) + "\n")
    read = pd.read_csv(out / name)
    read = read.dropna(subset=["cat"])
    (out / name).write_text("\n".join([lines[0]] + [lines[i + 1] for i in read.index]) + "\n")
    read = pd.read_csv(out / name)
    numeric = read[["x", "y"]].copy()
    mean_x = numeric["x"].mean()
    numeric["x"] = numeric["x"].fillna(mean_x)
    standard = StandardScaler().fit(numeric[["x"]])
    minmax = MinMaxScaler().fit(numeric[["y"]])
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(read[["cat"]])
    features = np.column_stack([
        standard.transform(numeric[["x"]]), minmax.transform(numeric[["y"]]), onehot.transform(read[["cat"]]),
    ])
    cases.append({
        "file": name,
        "mean": float(standard.mean_[0]),
        "var": float(standard.var_[0]),
        "scale": float(standard.scale_[0]),
        "names": ["x", "y"] + [str(c) for c in onehot.get_feature_names_out(["cat"])],
        "features": features.tolist(),
    })
    read.to_parquet(out / name.replace(".csv", ".parquet"), index=False, row_group_size=max(1, n // 4))
expected["random"] = cases

(out / "expected.json").write_text(json.dumps(expected))
