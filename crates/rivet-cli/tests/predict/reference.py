"""What `rivet predict` must produce on the tabular example, computed by pandas, scikit-learn
and PyTorch: the scikit-learn twin of models/tabular/spec.toml (benches/python/tabular_sklearn.py)
fitted on the same training table as tabular.pipeline.json, then torch.jit on tabular.pt.

usage: reference.py OUT_DIR -> OUT_DIR/test.csv, test.parquet (3,000 rows with regions the
training table never had), features.npy (scikit-learn's), ids.npy, probability.npy (PyTorch's)
"""

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "models" / "tabular"))
sys.path.insert(0, str(ROOT / "benches" / "python"))
import generate  # noqa: E402
import tabular_sklearn  # noqa: E402

out = Path(sys.argv[1])
fitted = tabular_sklearn.fit(generate.generate(20_000, seed=1, label=True))
test = generate.generate(3_000, seed=7, unseen=True)
test.to_csv(out / "test.csv", index=False, na_rep="")
# Three row groups, so that batches cross row-group boundaries.
test.to_parquet(out / "test.parquet", index=False, row_group_size=1000)
features = tabular_sklearn.transform(fitted, test)
np.save(out / "features.npy", features)
np.save(out / "ids.npy", test["customer_id"].to_numpy())
model = torch.jit.load(str(ROOT / "models" / "tabular" / "tabular.pt")).eval()
with torch.no_grad():
    np.save(out / "probability.npy", model(torch.from_numpy(features)).numpy()[:, 0])
