"""Writes the bundled example data: a reference sample and a current sample, with drift in some
columns (see mlwatchdog.demo.DRIFTED_COLUMNS) and none in the others. Deterministic (fixed seed).

Run: python examples/make_data.py [OUT_DIR]  (default: examples/data/{reference,current}.parquet)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mlwatchdog.demo import customers

OUT = Path(__file__).parent / "data"


def main(out: Path = OUT) -> None:
    rng = np.random.default_rng(20261125)
    out.mkdir(parents=True, exist_ok=True)
    customers(rng, 5_000, drifted=False).to_parquet(out / "reference.parquet", index=False)
    customers(rng, 2_000, drifted=True).to_parquet(out / "current.parquet", index=False)
    print(f"wrote {out / 'reference.parquet'} and {out / 'current.parquet'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
