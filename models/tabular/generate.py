"""Generates a realistic customer table for Rivet's tabular example, any row count, fixed seed.

Columns: customer_id (unique integer), signup_ts (text timestamp), age (nulls and impossible
outliers), income (log-normal, nulls, a heavy tail), balance (nulls, negatives),
tenure_months, num_products (1 to 4), region and plan (categories), and, with --label, churned
(0/1, drawn from the other columns). --unseen adds regions the training table never has.

usage: .venv/bin/python models/tabular/generate.py --rows N --out FILE.csv|FILE.parquet
           [--seed S] [--label] [--unseen] [--first-id N]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

REGIONS = ["central", "east", "north", "south", "west"]
UNSEEN_REGIONS = ["islands", "overseas"]
PLANS = ["basic", "plus", "premium"]


def generate(rows: int, seed: int, label: bool = False, unseen: bool = False, first_id: int = 100_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-01-01T00:00:00")
    seconds = rng.integers(0, 6 * 365 * 86400, rows)
    signup = start + seconds.astype("timedelta64[s]")
    age = np.round(rng.normal(42, 13, rows).clip(18, 95), 1)
    age[rng.random(rows) < 0.04] = np.nan
    outliers = rng.random(rows) < 0.005
    age[outliers] = rng.choice([0.0, 150.0, 999.0], outliers.sum())
    income = np.round(rng.lognormal(10.6, 0.55, rows), 2)
    income[rng.random(rows) < 0.002] *= 40
    income[rng.random(rows) < 0.06] = np.nan
    balance = np.round(rng.normal(2500, 3000, rows), 2)
    balance[rng.random(rows) < 0.03] = np.nan
    tenure = rng.integers(0, 96, rows)
    products = rng.integers(1, 5, rows)
    regions = REGIONS + (UNSEEN_REGIONS if unseen else [])
    weights = np.array([0.3, 0.2, 0.2, 0.15, 0.15] + ([0.05, 0.05] if unseen else []))
    region = rng.choice(regions, rows, p=weights / weights.sum())
    plan = rng.choice(PLANS, rows, p=[0.6, 0.3, 0.1])
    df = pd.DataFrame({
        "customer_id": np.arange(first_id, first_id + rows),
        "signup_ts": pd.Series(signup).dt.strftime("%Y-%m-%d %H:%M:%S"),
        "age": age,
        "income": income,
        "balance": balance,
        "tenure_months": tenure,
        "num_products": products,
        "region": region,
        "plan": plan,
    })
    if label:
        a = np.nan_to_num(age, nan=42).clip(18, 100)
        logit = (
            -0.8
            - 0.03 * (tenure - 36)
            + 0.6 * (products == 1)
            - 0.4 * (plan == "premium")
            + 0.015 * (a - 42)
            - 0.5 * (np.log1p(np.nan_to_num(income, nan=40000)) - 10.6)
            + 0.3 * (region == "south")
            + 0.25 * (pd.Series(signup).dt.month.to_numpy() == 12)
        )
        df["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--label", action="store_true")
    parser.add_argument("--unseen", action="store_true")
    parser.add_argument("--first-id", type=int, default=100_000, help="the first customer_id")
    args = parser.parse_args()
    df = generate(args.rows, args.seed, args.label, args.unseen, args.first_id)
    if args.out.suffix in (".parquet", ".pq"):
        df.to_parquet(args.out, index=False)
    else:
        df.to_csv(args.out, index=False, na_rep="")


if __name__ == "__main__":
    main()
