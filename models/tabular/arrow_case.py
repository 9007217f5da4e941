"""The reference of the C test of Arrow record batches (cpp-examples/tests/arrow_tests.c): six
customer rows, the same as the test builds, transformed by the scikit-learn twin of spec.toml
(fitted on the training table train.py uses) and scored by PyTorch (tabular.pt).

Writes cases/arrow/features.npy ([6, 16] f32) and cases/arrow/churn_probability.npy ([6, 1]).
usage: .venv/bin/python models/tabular/arrow_case.py
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "benches" / "python"))
import generate  # noqa: E402
import tabular_sklearn  # noqa: E402

nan = float("nan")
ROWS = pd.DataFrame({
    "customer_id": [900001, 900002, 900003, 900004, 900005, 900006],
    "signup_ts": ["2021-03-14 09:26:53", "2019-12-31 23:59:59", "2024-07-04 12:00:00",
                  "2020-02-29 06:30:00", "2023-11-05 17:45:10", "2022-05-09 00:00:01"],
    "age": [34.5, nan, 999.0, 18.0, 71.2, 45.0],
    "income": [52000.0, 150000.0, nan, 12000.0, 88000.0, 61000.0],
    "balance": [1200.5, -300.0, nan, 0.0, 25000.0, 5000.0],
    "tenure_months": [3, 60, 0, 12, 47, 95],
    "num_products": [2, 1, 4, 3, 2, 1],
    "region": ["north", "south", "islands", "central", "west", "east"],
    "plan": ["basic", "premium", "plus", "basic", "plus", "premium"],
})

fitted = tabular_sklearn.fit(generate.generate(20_000, seed=1, label=True))
features = tabular_sklearn.transform(fitted, ROWS)
out = HERE / "cases" / "arrow"
out.mkdir(parents=True, exist_ok=True)
np.save(out / "features.npy", features)
with torch.no_grad():
    probability = torch.jit.load(str(HERE / "tabular.pt"))(torch.from_numpy(features)).numpy()
np.save(out / "churn_probability.npy", probability)
print(probability[:, 0])
