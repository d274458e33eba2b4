"""Where a run's memory per added base model goes (issue 9: peak RSS per added model).

Builds ``bench_end_to_end``'s workload at ``--rows`` training rows, then runs it with each
``--counts`` number of external base models (copies of one file), each in a subprocess
with tracemalloc on. tracemalloc sees NumPy and pandas allocations (not TensorFlow's): it
prints the traced peak, and the largest allocation sites at the end of the stage where the
traced memory was highest, so the per-model growth can be read site by site.

    python experiments/benchmarks/mem_per_model.py [--rows 100000] [--counts 4,12]

Measured 2026-11-29 (100k rows): traced peak 323 MB with 4 models, 694 MB with 12 (46 MB
per model); at the end of the leaderboard stage 27 MB per model still held: the level-1
matrix (np.hstack, 8 MB), the OOF results frame (pandas, 9.6 MB) and clipped copies kept
for scoring (np.clip, 8 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

from stacking.cli import quiet_tensorflow

quiet_tensorflow()
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_end_to_end import external_models, make_workload, write_config  # noqa: E402

STAGES = ["_predict_bases", "_fit", "_select", "_predict_test", "_leaderboard"]


def child(root: Path, n: int) -> None:
    """One run with ``n`` external models under tracemalloc; prints a JSON line and sites."""
    import stacking.experiment as experiment
    from stacking import Experiment

    raw = json.loads((root / "raw.json").read_text())
    config = write_config(root, raw, f"mem{n}", base_models=external_models(root, n))
    highest: dict = {"mb": 0.0, "snapshot": None, "stage": None}

    def watched(name: str):
        original = getattr(experiment.Experiment, name)

        def stage(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            now = tracemalloc.get_traced_memory()[0] / 1e6
            if now > highest["mb"]:
                highest.update(mb=now, snapshot=tracemalloc.take_snapshot(), stage=name)
            return out

        setattr(experiment.Experiment, name, stage)

    for name in STAGES:
        watched(name)
    tracemalloc.start(1)
    Experiment.from_yaml(config, output_dir=root / f"out{n}", progress=False).run()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    summary = {"models": n, "traced_peak_mb": peak, "stage": highest["stage"]}
    summary["held_at_stage_end_mb"] = highest["mb"]
    print(json.dumps(summary))
    for stat in highest["snapshot"].statistics("lineno")[:10]:
        print(f"  {stat.size / 1e6:8.1f} MB {stat.count:7d} blocks  {stat.traceback}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--counts", default="4,12")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), int(args.child[1]))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "raw.json").write_text(json.dumps(make_workload(root, args.rows, n_models=1)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for n in (int(c) for c in args.counts.split(",")):
            cmd = [sys.executable, __file__, "--child", str(root), str(n)]
            subprocess.run(cmd, check=True, env=env)


if __name__ == "__main__":
    main()
