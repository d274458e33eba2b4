"""Warm rerun: a run that changes only the meta-model, against the cold run (issue 9).

Workload: ``bench_end_to_end.make_workload`` (4 base models of 64-256-256-10 MLPs x 5
folds, ``--rows`` training rows + 20,000 test rows, 10 classes). The cold run (cache on,
meta ``mean``) fills the cache; the warm run changes only ``meta.candidates`` to
``[geometric]``, so every base prediction comes from the cache and no model is loaded.
Target: warm >= 5x faster than cold. Prints both times, the ratio and, with ``--profile``,
the warm run's cProfile top functions by cumulative and by own time (a further warm run,
so the printed times are unprofiled).

    python experiments/benchmarks/bench_warm_rerun.py [--rows 100000] [--profile]

Measured 2026-11-29 on the shared 2-core machine (load average ~2.5; main and branch
back to back, best of 3 warm runs): main cold 6.5 s, warm 3.8-4.0 s (1.6-1.7x); after
the warm-rerun fixes cold 5.5-5.9 s, warm 2.8-3.1 s (1.8-2.1x). What the warm run still
spends (profiled, 100k rows): plots ~1.0-1.3 s (matplotlib drawing, 5 PNGs), the
bootstrap 0.6 s (0.22 s of it drawing the seeded 1000 x 100k indices, a fixed stream),
scores 0.5 s (mostly roc_auc's 10 sorts per entry), meta fit 0.3 s, parquet 0.3 s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_end_to_end import _top, make_workload, stacking_run, write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="cProfile a further warm run")
    parser.add_argument("--top", type=int, default=30, help="profile lines per ordering")
    parser.add_argument("--warm-runs", type=int, default=1, help="warm runs; the best is kept")
    args = parser.parse_args()
    report: dict = {"rows": args.rows, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = make_workload(root, args.rows)
        cached = {"cache.enabled": True}
        cold_cfg = write_config(root, raw, "cold", **cached)
        warm_cfg = write_config(root, raw, "warm", **cached, **{"meta.candidates": ["geometric"]})
        cold, _ = stacking_run(cold_cfg, root / "cold")
        warm = min(
            (stacking_run(warm_cfg, root / f"warm{i}")[0] for i in range(args.warm_runs)),
            key=lambda t: t["wall"],
        )
        assert "stage" not in warm or not warm.get("rows"), "the warm run predicted rows"
        report.update(cold_s=cold["wall"], warm_s=warm["wall"])
        report["warm_speedup"] = cold["wall"] / warm["wall"]
        profile = None
        if args.profile:
            profile = cProfile.Profile()
            stacking_run(warm_cfg, root / "warm_profiled", profile)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}))
    if profile is not None:
        print(_top(profile, "cumulative", args.top))
        print(_top(profile, "tottime", args.top))


if __name__ == "__main__":
    main()
