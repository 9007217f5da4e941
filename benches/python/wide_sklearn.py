"""A wide table and its pandas + scikit-learn twin: 42 numeric columns (with missing values)
imputed by their mean and standardised, and 21 text columns one-hot encoded, 63 columns in
all, a third of them categorical. `make bench-prep` times Rivet's spec of it (SPEC) against
this twin.

    usage: python wide_sklearn.py generate ROWS SEED OUT.csv
           python wide_sklearn.py fit TRAIN.csv OUT.pkl
           python wide_sklearn.py transform FITTED.pkl DATA.csv OUT.npy
"""

import pickle
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = [f"n{i}" for i in range(42)]
CATEGORICAL = [f"c{i}" for i in range(21)]
SPEC = {"steps": [
    {"op": "impute", "columns": NUMERIC, "strategy": "mean"},
    {"op": "standard_scale", "columns": NUMERIC},
    {"op": "one_hot", "columns": CATEGORICAL, "unseen": "ignore"},
]}


def generate(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {}
    for i, name in enumerate(NUMERIC):
        values = rng.normal(10.0 ** (i % 7), 1.0 + i, rows)
        values[rng.random(rows) < 0.05] = np.nan
        columns[name] = values
    for i, name in enumerate(CATEGORICAL):
        words = np.array([f"{name}_v{k}" for k in range(3 + i % 9)])
        columns[name] = words[rng.integers(0, len(words), rows)]
    return pd.DataFrame(columns)


def fit(train: pd.DataFrame) -> ColumnTransformer:
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
    ]).fit(train)


def main() -> None:
    command = sys.argv[1]
    if command == "generate":
        generate(int(sys.argv[2]), int(sys.argv[3])).to_csv(sys.argv[4], index=False, na_rep="")
    elif command == "fit":
        with open(sys.argv[3], "wb") as f:
            pickle.dump(fit(pd.read_csv(sys.argv[2])), f)
    elif command == "transform":
        fitted = pickle.load(open(sys.argv[2], "rb"))
        np.save(sys.argv[4], np.ascontiguousarray(fitted.transform(pd.read_csv(sys.argv[3]), ).astype(np.float32)))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
