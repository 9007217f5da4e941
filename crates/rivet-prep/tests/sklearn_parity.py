"""Writes a table with the hard cases (NaN, a constant column, a mode tie, an even-count
median) and what scikit-learn's twins of Rivet's steps make of it, for sklearn_parity.rs.

usage: sklearn_parity.py OUT_DIR  ->  OUT_DIR/data.csv, OUT_DIR/data.parquet, OUT_DIR/expected.json
"""

import json
import pathlib
import sys

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler

out = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(2026)
n = 200
a = rng.normal(50, 12, n)
a[rng.choice(n, 20, replace=False)] = np.nan
b = rng.lognormal(3, 1, n)
b[rng.choice(n, 100, replace=False)] = np.nan          # 100 present: an even-count median
# 1 and 3 tie as the most frequent value: most_frequent takes the smaller, 1.
c = rng.permutation(np.array([1.0] * 40 + [3.0] * 40 + [0.0] * 35 + [2.0] * 35 + [4.0] * 30 + [np.nan] * 20))
d = rng.uniform(-5, 5, n)
d[rng.choice(n, 30, replace=False)] = np.nan
e = np.full(n, 3.0)                                    # constant: StandardScaler keeps scale 1
f = rng.exponential(2.0, n)
df = pd.DataFrame({"a": a, "b": b, "c": c, "d": d, "e": e, "f": f})
df.to_csv(out / "data.csv", index=False, na_rep="")
df.to_parquet(out / "data.parquet", index=False)

cols = {}
imputers = {"a": SimpleImputer(strategy="mean"), "b": SimpleImputer(strategy="median"),
            "c": SimpleImputer(strategy="most_frequent"), "d": SimpleImputer(strategy="constant", fill_value=7.0)}
statistics = []
for name, imputer in imputers.items():
    cols[name] = imputer.fit_transform(df[[name]])[:, 0]
    statistics.append(float(imputer.statistics_[0]))
cols["e"], cols["f"] = df["e"].to_numpy(), df["f"].to_numpy()
standard = StandardScaler().fit(np.column_stack([cols["a"], cols["b"], cols["e"]]))
scaled = standard.transform(np.column_stack([cols["a"], cols["b"], cols["e"]]))
cols["a"], cols["b"], cols["e"] = scaled.T
minmax = MinMaxScaler(feature_range=(-1, 1)).fit(np.column_stack([cols["c"], cols["d"]]))
cols["c"], cols["d"] = minmax.transform(np.column_stack([cols["c"], cols["d"]])).T
cols["f"] = np.clip(np.log1p(cols["f"]), 0.0, 2.0)
features = ["a", "b", "c", "d", "e", "f"]
expected = {
    "impute": statistics,
    "mode_tie": [int((df["c"] == 1).sum()), int((df["c"] == 3).sum())],
    "standard": {"mean": standard.mean_.tolist(), "var": standard.var_.tolist(), "scale": standard.scale_.tolist()},
    "minmax": {"data_min": minmax.data_min_.tolist(), "data_max": minmax.data_max_.tolist(),
               "scale": minmax.scale_.tolist(), "min": minmax.min_.tolist()},
    "features": features,
    "output": np.column_stack([cols[f] for f in features]).tolist(),
}
(out / "expected.json").write_text(json.dumps(expected))

# Categorical columns: fitted on a training table, applied to one with unseen categories.
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder  # noqa: E402

cities = np.array(["Oslo", "Lyon", "Zürich", "Austin", "lima", "Osaka"])
plans = np.array(["basic", "pro", "team"])
train = pd.DataFrame({"city": rng.choice(cities[:5], 120), "plan": rng.choice(plans[:2], 120)})
test = pd.DataFrame({"city": rng.choice(cities, 40), "plan": rng.choice(plans, 40)})
train.to_csv(out / "cat_train.csv", index=False)
test.to_csv(out / "cat_test.csv", index=False)
onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train[["city"]])
ordinal = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(train[["plan"]])
expected = {
    "city_categories": [str(c) for c in onehot.categories_[0]],
    "plan_categories": [str(c) for c in ordinal.categories_[0]],
    "features": ["plan"] + [str(n) for n in onehot.get_feature_names_out(["city"])],
    "output": np.column_stack([ordinal.transform(test[["plan"]]), onehot.transform(test[["city"]])]).tolist(),
    "unseen_city_rows": int((~test["city"].isin(cities[:5])).sum()),
}
(out / "expected_categorical.json").write_text(json.dumps(expected))

# Timestamps in every accepted form, numbers to bucketize and to combine: what pandas and
# numpy make of them (datetime parts, np.digitize, arithmetic).
stamps = ["2024-02-29 23:59:58", "2019-01-01T00:00:00", "2021-07-04 12:30:15.250", "2020-12-31T08:05:09Z",
          "2022-03-15T01:02:03+05:30", "2023-10-01", "", "1999-12-31 23:59:59", "2024-06-30T18:45"]
x = [0.5, -3.0, 2.0, np.nan, 7.25, 2.0, 10.0, -0.0, 5.0]
y = [1.0, 2.0, -2.0, 4.0, np.nan, 0.5, 3.0, 8.0, 1.0]
extra = pd.DataFrame({"ts": stamps, "x": x, "y": y})
extra.to_csv(out / "extra.csv", index=False, na_rep="")
parsed = pd.to_datetime(pd.Series(stamps).replace("", None), format="ISO8601", utc=True)
parts = {
    "year": parsed.dt.year, "month": parsed.dt.month, "day": parsed.dt.day, "hour": parsed.dt.hour,
    "minute": parsed.dt.minute, "second": parsed.dt.second, "weekday": parsed.dt.day_of_week,
    "day_of_year": parsed.dt.day_of_year,
}
xs = np.array(x)
expected = {
    "parts": {k: [None if pd.isna(v) else float(v) for v in s] for k, s in parts.items()},
    "bucket": [None if np.isnan(v) else float(np.digitize(v, [-1.0, 0.0, 2.0, 5.0])) for v in xs],
    "ratio": [None if np.isnan(v) else float(v) for v in (xs * 2 - 1) / (np.array(y) + 1)],
}
(out / "expected_extra.json").write_text(json.dumps(expected))
