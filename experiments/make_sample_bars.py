"""Write the sample intraday bars shipped with the repo (made by the model itself).

    python -m experiments.make_sample_bars            # -> experiments/data/sample_bars.csv

Twenty days of 40 five-minute bars from the ``liquidity`` preset: ``time, price, volume, spread``.
``sb3_exec.calibrate.calibrate`` recovers the preset's parameters from them (see the README).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sb3_exec.calibrate import simulate_bars

DEFAULT_OUT = Path(__file__).parent / "data" / "sample_bars.csv"


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.make_sample_bars",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--days", type=int, default=20, help="trading days (default 20)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write")
    args = p.parse_args(argv)
    if args.days < 1:
        p.error("--days must be >= 1")
    bars = simulate_bars("liquidity", days=args.days, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bars.to_csv(args.out, index=False, float_format="%.6f")
    print(f"wrote {len(bars)} bars to {args.out}")


if __name__ == "__main__":
    main()
