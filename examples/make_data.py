"""Writes the bundled example data: a reference sample and a current sample, with drift in some
columns (income, credit_score, channel, score) and none in the others. Deterministic (fixed seed).

Run: python examples/make_data.py [OUT_DIR]  (default: examples/data/{reference,current}.parquet)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "data"
DRIFTED_COLUMNS = ("income", "credit_score", "channel", "score")


def customers(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    channel_p = [0.30, 0.55, 0.15] if drifted else [0.50, 0.35, 0.15]
    income = rng.lognormal(np.log(52_000 * (1.25 if drifted else 1.0)), 0.45, n)
    income[rng.random(n) < 0.01] = np.nan  # a few missing incomes, as in real logs
    credit = rng.normal(620 if drifted else 650, 75 if drifted else 60, n)
    frame = pd.DataFrame(
        {
            "age": rng.normal(41, 12, n).clip(18, 90).round(),
            "income": income,
            "credit_score": credit.round(),
            "tenure_months": rng.integers(0, 121, n),
            "n_products": rng.choice([1, 2, 3, 4, 5], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "channel": rng.choice(["web", "app", "branch"], n, p=channel_p),
            "region": rng.choice(["north", "south", "east", "west"], n),
        }
    )
    logit = -4 + 0.004 * (700 - frame["credit_score"]) * 10 + 0.3 * (frame["channel"] == "app")
    frame["score"] = 1 / (1 + np.exp(-logit))  # the model's predicted default probability
    return frame


def main(out: Path = OUT) -> None:
    rng = np.random.default_rng(20261125)
    out.mkdir(parents=True, exist_ok=True)
    customers(rng, 5_000, drifted=False).to_parquet(out / "reference.parquet", index=False)
    customers(rng, 2_000, drifted=True).to_parquet(out / "current.parquet", index=False)
    print(f"wrote {out / 'reference.parquet'} and {out / 'current.parquet'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
