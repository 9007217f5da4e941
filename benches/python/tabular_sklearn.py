"""The pandas + scikit-learn twin of models/tabular/spec.toml, written the way a team that
trained in Python would: every step that has a scikit-learn twin uses it.

It is the reference `rivet predict`'s test and `make bench-prep` compare Rivet against.

    fit(train: DataFrame) -> Fitted
    transform(fitted, df) -> float32 array [rows, 16], columns in FEATURES order
    usage: python tabular_sklearn.py fit TRAIN.csv OUT.pkl
           python tabular_sklearn.py transform FITTED.pkl DATA.(csv|parquet) OUT.npy
           python tabular_sklearn.py predict FITTED.pkl MODEL.onnx DATA OUT.(csv|parquet) ID_COLUMN
"""

import pickle
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

STANDARD = ["age", "income", "balance", "balance_per_product", "signup_ts_year"]
MINMAX = ["tenure_months", "num_products", "signup_ts_month", "signup_ts_weekday", "signup_ts_hour"]
FEATURES = [
    "age", "income", "balance", "tenure_months", "num_products", "plan",
    "signup_ts_year", "signup_ts_month", "signup_ts_weekday", "signup_ts_hour",
    "balance_per_product",
    "region_central", "region_east", "region_north", "region_south", "region_west",
]


@dataclass
class Fitted:
    age: SimpleImputer
    income: SimpleImputer
    balance: SimpleImputer
    standard: StandardScaler
    minmax: MinMaxScaler
    region: OneHotEncoder
    plan: OrdinalEncoder


def _steps(df: pd.DataFrame, fitted: "Fitted | None"):
    """Applies the spec's steps in order, fitting each on the way when `fitted` is None."""
    out = pd.DataFrame(index=df.index)
    ts = pd.to_datetime(df["signup_ts"], format="%Y-%m-%d %H:%M:%S")
    for name in ["age", "income", "balance", "tenure_months", "num_products"]:
        out[name] = df[name].astype("float64")
    out["signup_ts_year"] = ts.dt.year.astype("float64")
    out["signup_ts_month"] = ts.dt.month.astype("float64")
    out["signup_ts_weekday"] = ts.dt.day_of_week.astype("float64")
    out["signup_ts_hour"] = ts.dt.hour.astype("float64")
    out["balance_per_product"] = out["balance"] / out["num_products"]
    out["age"] = out["age"].clip(18, 100)

    def step(key, make, columns):
        nonlocal fitted_parts
        est = make() if fitted is None else getattr(fitted, key)
        if fitted is None:
            est.fit(out[columns])
            fitted_parts[key] = est
        out[columns] = est.transform(out[columns])

    fitted_parts = {}
    step("age", lambda: SimpleImputer(strategy="median"), ["age"])
    step("income", lambda: SimpleImputer(strategy="mean"), ["income"])
    step("balance", lambda: SimpleImputer(strategy="constant", fill_value=0.0), ["balance", "balance_per_product"])
    out["income"] = np.log1p(out["income"])
    out["tenure_months"] = np.digitize(out["tenure_months"], [6, 12, 24, 48]).astype("float64")
    step("standard", StandardScaler, STANDARD)
    step("minmax", MinMaxScaler, MINMAX)
    region = fitted.region if fitted else OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(df[["region"]])
    plan = fitted.plan if fitted else OrdinalEncoder().fit(df[["plan"]])
    fitted_parts.update(region=region, plan=plan)
    out["plan"] = plan.transform(df[["plan"]])[:, 0]
    onehot = region.transform(df[["region"]])
    for k, name in enumerate(region.get_feature_names_out(["region"])):
        out[name] = onehot[:, k]
    return out, (fitted or Fitted(**fitted_parts))


def fit(train: pd.DataFrame) -> Fitted:
    return _steps(train, None)[1]


def transform(fitted: Fitted, df: pd.DataFrame) -> np.ndarray:
    out, _ = _steps(df, fitted)
    return np.ascontiguousarray(out[FEATURES].to_numpy(dtype=np.float32))


def read(path: str) -> pd.DataFrame:
    return pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path)


def main() -> None:
    command = sys.argv[1]
    if command == "fit":
        with open(sys.argv[3], "wb") as f:
            pickle.dump(fit(read(sys.argv[2])), f)
    elif command == "transform":
        fitted = pickle.load(open(sys.argv[2], "rb"))
        np.save(sys.argv[4], transform(fitted, read(sys.argv[3])))
    elif command == "predict":
        import onnxruntime as ort

        fitted = pickle.load(open(sys.argv[2], "rb"))
        options = ort.SessionOptions()
        session = ort.InferenceSession(sys.argv[3], options, providers=["CPUExecutionProvider"])
        df = read(sys.argv[4])
        features = transform(fitted, df)
        (prob,) = session.run(None, {session.get_inputs()[0].name: features})
        preds = pd.DataFrame({sys.argv[6]: df[sys.argv[6]], session.get_outputs()[0].name: prob[:, 0]})
        out = sys.argv[5]
        preds.to_parquet(out, index=False) if out.endswith((".parquet", ".pq")) else preds.to_csv(out, index=False)
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
