"""Many members: the cost of each added base model, 8 vs 128 external members.

``bench_end_to_end``'s workload (64-256-256-10 MLP, 10 classes) at ``--rows`` training rows
(20,000 by default) with N external base models (copies of one model file, each loaded,
predicted and held like a distinct model), N in ``--counts``; each run in its own
subprocess, timed and with its peak RSS. The figures are per added member: the slope
between the smallest and the largest count.

    python experiments/benchmarks/bench_members.py [--rows 20000] [--counts 8,128] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_end_to_end import external_models, make_workload, write_config

N_BYTES_PER_VALUE = 8  # level 1 is float64


def child(config: str, profile: bool) -> None:
    """Subprocess body: one run; prints wall seconds and peak RSS (MB) as a JSON line."""
    from stacking import Experiment

    import_done = time.perf_counter()
    experiment = Experiment.from_yaml(
        config, output_dir=Path(config).with_suffix(".out"), progress=False
    )
    prof = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if prof is not None:
        prof.enable()
    experiment.run()
    if prof is not None:
        prof.disable()
        buffer = io.StringIO()
        pstats.Stats(prof, stream=buffer).sort_stats("cumulative").print_stats(40)
        print(buffer.getvalue(), file=sys.stderr)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"run_s": wall, "setup_s": start - import_done, "peak_rss_mb": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--counts", default="8,128")
    parser.add_argument("--profile", action="store_true", help="cProfile of the largest run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.child_profile)
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = make_workload(root, args.rows, n_models=1)  # one fold set: the config needs a model
        runs = {}
        for n in counts:
            config = write_config(root, raw, f"members{n}", base_models=external_models(root, n))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            command = [sys.executable, __file__, "--child", str(config)]
            if args.profile and n == max(counts):
                command.append("--child-profile")
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            if args.profile and n == max(counts):
                print(done.stderr[-12000:], file=sys.stderr)
            runs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = min(counts), max(counts)
    added = large - small
    n_classes = 10
    level1_mb = args.rows * n_classes * N_BYTES_PER_VALUE / 1e6
    print(
        json.dumps(
            {
                "rows": args.rows,
                "runs": {str(n): {k: round(v, 2) for k, v in r.items()} for n, r in runs.items()},
                "s_per_added_member": round(
                    (runs[large]["run_s"] - runs[small]["run_s"]) / added, 3
                ),
                "mb_per_added_member": round(
                    (runs[large]["peak_rss_mb"] - runs[small]["peak_rss_mb"]) / added, 2
                ),
                "level1_mb_per_member": round(level1_mb, 2),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
