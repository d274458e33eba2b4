"""One config run over several seeds (``stacking run CONFIG --seeds 0-4``).

What a seed changes, and what it must not:

* ``meta.seed``: the seed of the leaderboard's bootstrap resamples;
* ``random_state`` of every meta-model candidate (every level) whose estimator takes one
  and whose ``params`` do not set it (``selection``'s bags, ``mlp`` and ``convex``'s
  initial weights, a LightGBM meta-model's sampling). A deterministic candidate (``mean``,
  ``nnls``, ``logistic`` with its default solver) gives the same predictions under every
  seed: its spread over seeds is zero, which is the truth about it.

The fold plan does not change (``folds.seed`` is kept): frozen fold models were trained on
that plan and their manifests and prediction files are checked against its digest, so a
seed that re-split the rows would make every fold set refuse to load. For the same reason
base models, backbone heads and the re-splits of ``meta.repeats`` (seeded from
``folds.seed``) are the same for every seed; seeds vary only the meta level.

Each seed's run is an ordinary run with the seeded config as its ``config.resolved.yaml``
(so ``stacking reproduce`` re-runs it), nested in MLflow under one parent run that records
the config and the seed list.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacking.config import Config, load_config
from stacking.errors import ConfigError

if TYPE_CHECKING:
    from stacking.experiment import ExperimentResult

MAX_SEEDS = 1000
_SEED_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` → ``[0, 1, 2, 3, 4]``; ``"0,2,7"`` and ``"0-2,9"`` as written.

    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    """
    hint = "write non-negative integers and ranges, e.g. --seeds 0-4 or --seeds 0,2,7"
    seeds: list[int] = []
    for item in text.split(","):
        found = _SEED_ITEM.fullmatch(item.strip())
        if found is None:
            raise ConfigError(
                f"--seeds: {item.strip()!r} is not a seed or a range. "
                f"Received: --seeds {text!r}; {hint}"
            )
        low = int(found.group(1))
        high = int(found.group(2)) if found.group(2) is not None else low
        if high < low:
            raise ConfigError(
                f"--seeds: the range {item.strip()!r} ends before it starts. "
                f"Received: --seeds {text!r}; {hint}"
            )
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ConfigError(
                f"--seeds asks for more than {MAX_SEEDS} runs. Received: --seeds {text!r}; {hint}"
            )
        seeds += range(low, high + 1)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds names seed(s) {repeated} twice. Received: --seeds "
            f"{text!r}; each seed is one run, list it once"
        )
    return seeds


def _estimator_classes(key: str) -> list[type]:
    """The classes a candidate's ``estimator`` may build: both variants of a short name
    (``default`` is ``logistic`` or ``ridge`` by task), or the class of an import path."""
    from stacking.meta import get_meta_learner

    targets: list[Any] = []
    for name in ("logistic", "ridge") if key == "default" else (key,):
        learner = get_meta_learner(name)
        targets += [name] if learner is None else [learner.classifier, learner.regressor]
    classes = []
    for target in targets:
        if isinstance(target, str):
            module, _, attr = target.rpartition(".")
            try:
                target = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError, ValueError):
                continue  # the experiment names what cannot be imported, with its key
        if isinstance(target, type):
            classes.append(target)
    return classes


def _takes_random_state(key: str) -> bool:
    classes = _estimator_classes(key)
    return bool(classes) and all(
        "random_state" in inspect.signature(cls).parameters for cls in classes
    )


def _seeded_candidates(specs: list[Any], seed: int) -> list[Any]:
    out: list[Any] = []
    for spec in specs:
        entry: dict[str, Any] = {"estimator": spec} if isinstance(spec, str) else dict(spec)
        params = dict(entry.get("params") or {})
        if "random_state" not in params and _takes_random_state(entry["estimator"]):
            entry["params"] = {**params, "random_state": seed}
            out.append(entry)
        else:
            out.append(spec)
    return out


def seeded_config(config: Config, seed: int) -> Config:
    """``config`` for one seed: ``meta.seed`` and the candidates' ``random_state`` set to
    ``seed`` (see the module docstring); nothing about the data, folds or base models."""
    raw = config.to_dict()
    meta = raw["meta"]
    meta["seed"] = seed
    meta["candidates"] = _seeded_candidates(meta["candidates"], seed)
    for level in meta["levels"]:
        level["candidates"] = _seeded_candidates(level["candidates"], seed)
    return Config.model_validate(raw)


def _unseeded(spec: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"estimator": spec} if isinstance(spec, str) else dict(spec)
    params = {k: v for k, v in (entry.get("params") or {}).items() if k != "random_state"}
    return {"name": entry.get("name"), "estimator": entry["estimator"], "params": params}


def config_digest(raw: dict[str, Any]) -> str:
    """What makes two runs "the same config" for ``stacking compare``: the resolved config
    without what a seed sets (``meta.seed``, candidates' ``random_state``) and without
    what does not change a score (name, tracking, cache, executor, plots)."""
    kept = {k: v for k, v in raw.items() if k not in ("name", "tracking", "cache", "executor")}
    kept.pop("plots", None)
    meta = dict(kept.get("meta") or {})
    meta.pop("seed", None)
    meta["candidates"] = [_unseeded(s) for s in meta.get("candidates") or ["default"]]
    meta["levels"] = [
        {"candidates": [_unseeded(s) for s in level["candidates"]]}
        for level in meta.get("levels") or []
    ]
    kept["meta"] = meta
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_output_dirs(base: Path, seeds: Sequence[int]) -> dict[int, Path]:
    """``base/seed-<s>`` for every seed, each checked empty and writable before any run."""
    from stacking import results

    return {s: results.check_output_dir(base / f"seed-{s}") for s in seeds}


def run_seeds(
    path: str | Path,
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> list[ExperimentResult]:
    """Run the config at ``path`` once per seed; returns the :class:`ExperimentResult` of
    each, in seed order. With an MLflow tracker the runs nest under one parent run."""
    from stacking import results
    from stacking.experiment import Experiment
    from stacking.tracking import MlflowTracker, get_tracker, seed_run, seeds_parent

    config = load_config(path, overrides)
    base = Path(output_dir) if output_dir else results.default_dir(config.name)
    outputs = seed_output_dirs(base, seeds)
    seeded = {seed: seeded_config(config, seed) for seed in seeds}  # before any run starts
    digest = config_digest(config.to_dict())
    tracker = get_tracker(config.tracking)
    name = config.tracking.run_name or config.name
    done = []
    with ExitStack() as stack:
        if isinstance(tracker, MlflowTracker):
            stack.enter_context(seeds_parent(tracker, name, config.to_dict(), list(seeds), digest))
        for i, seed in enumerate(seeds, 1):
            if progress:
                print(f"seed {seed} ({i} of {len(seeds)})", file=sys.stderr)
            with ExitStack() as child:
                if isinstance(tracker, MlflowTracker):
                    child.enter_context(seed_run(tracker, f"{name}-seed{seed}", seed, digest))
                experiment = Experiment(
                    seeded[seed],
                    output_dir=outputs[seed],
                    tracker=tracker,
                    progress=progress,
                )
                done.append(experiment.run())
    return done
