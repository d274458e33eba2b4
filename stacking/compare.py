"""``stacking compare``: one table over several runs, for a paper.

Runs are grouped by config (:func:`~stacking.seeds.config_digest`: the resolved config
without what a seed sets, so the seeds of one config form one group) and paired across
configs by seed. Every number is computed from the runs' stored out-of-fold predictions of
their selected entry (``meta_oof.parquet``) and their labels (``oof.parquet``):

* each config's mean score over its seeds, with a t interval over seeds,
  ``mean ± t(0.975, n-1) · sd / √n`` (Student's t: the seeds are few);
* each other config's paired difference from the baseline (``config - baseline``, in the
  metric's units): one difference per seed both configs ran, on the same rows; their mean,
  a t interval over those seeds, and a paired bootstrap interval over rows of the
  seed-averaged difference (the same resampled rows for both configs, 1,000 resamples,
  seed 0), the leaderboard's row-level interval carried over to the comparison.

Runs are paired only on the same rows with the same labels: a pair whose data digest,
ids or labels differ is refused with the two run ids. Weighted runs (``data.weight``) are
refused: their weights are not among the stored files.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from stacking.errors import ConfigError, DataError, OutputError
from stacking.metrics import Metric, get_metric
from stacking.seeds import config_digest
from stacking.tracking import StoredRun

FORMATS = ("md", "tex", "csv")
N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
_BLOCK = 1 << 20  # resampled row indices drawn at once (bounded memory)


@dataclass
class ComparedRun:
    """One run's selected entry: its OOF predictions and labels, by row id."""

    run_id: str
    config: str
    digest: str
    seed: int
    data_digest: str
    task: str
    primary_metric: str
    start_time: int
    ids: np.ndarray
    y: np.ndarray
    pred: np.ndarray


@dataclass
class Comparison:
    """The table (one row per config) and what the reader must know about it."""

    table: pd.DataFrame
    metric: Metric
    baseline: str
    notes: list[str] = field(default_factory=list)


def _labels(
    run_id: str, oof: pd.DataFrame, target: str | list[str], task: str, names: list[str]
) -> np.ndarray:
    if task == "multilabel":
        return oof[list(target)].to_numpy(dtype=int)
    if task == "regression":
        return oof[target].to_numpy(dtype=float)
    index = {name: k for k, name in enumerate(names)}
    raw: list[str] = [str(v) for v in oof[target].to_numpy()]
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataError(
            f"run {run_id}: labels {unknown[:5]} of {target!r} are not among its selected "
            f"entry's classes {list(names)[:10]}; the run's files are inconsistent, re-run it"
        )
    return np.array([index[v] for v in raw], dtype=int)


def read_run(stored: StoredRun) -> ComparedRun:
    """A :class:`~stacking.tracking.StoredRun`'s selected entry, from its stored files."""
    run_id, folder, tags = stored.run_id, Path(stored.folder), stored.tags
    config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    data = config.get("data") or {}
    if data.get("weight"):
        raise DataError(
            f"run {run_id} weights its rows (data.weight: {data['weight']!r}), and the weights "
            "are not among its stored files; compare runs without data.weight"
        )
    ensemble, task = tags["stacking.ensemble"], tags["stacking.task"]
    meta = pd.read_parquet(folder / "meta_oof.parquet")
    oof = pd.read_parquet(folder / "oof.parquet")
    columns = [c for c in meta.columns if str(c).startswith(f"{ensemble}__")]
    if not columns:
        raise DataError(
            f"run {run_id}: meta_oof.parquet holds no OOF predictions of its selected entry "
            f"{ensemble!r} (a base model, recorded by an older tf-stacking); re-run it "
            f"(`stacking reproduce {run_id}`) and compare the new run"
        )
    id_column = str(oof.columns[0])
    ids = meta[id_column].astype(str).to_numpy()
    if not np.array_equal(ids, oof[id_column].astype(str).to_numpy()):
        raise DataError(f"run {run_id}: oof.parquet and meta_oof.parquet hold different rows")
    names = [str(c).split("__", 1)[1] for c in columns]
    pred = meta[columns].to_numpy(dtype=float)
    seed = tags.get("stacking.seed", (config.get("meta") or {}).get("seed", 0))
    return ComparedRun(
        run_id=run_id,
        config=str(config.get("name") or stored.name),
        digest=config_digest(config),
        seed=int(seed),
        data_digest=tags.get("stacking.data_digest", ""),
        task=task,
        primary_metric=tags.get("stacking.primary_metric", ""),
        start_time=stored.start_time,
        ids=ids,
        y=_labels(run_id, oof, data["target"], task, names),
        pred=pred.ravel() if task == "regression" else pred,
    )


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval over ``values`` (NaN bounds for fewer than two)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def row_bootstrap(
    metric: Metric, task: str, y: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[float, float]:
    """95 % paired bootstrap interval over rows of the mean over ``pairs`` of
    ``score(a) - score(b)``: every pair is scored on the same resampled rows."""
    n = len(y)
    prepared = [
        (metric.prepare(y, a, task=task), metric.prepare(y, b, task=task)) for a, b in pairs
    ]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    diffs = np.empty(N_RESAMPLES)
    step = max(1, _BLOCK // max(n, 1))
    for start in range(0, N_RESAMPLES, step):
        idx = rng.integers(0, n, size=(min(step, N_RESAMPLES - start), n))
        block = [pa.resample_scores(idx) - pb.resample_scores(idx) for pa, pb in prepared]
        diffs[start : start + len(idx)] = np.mean(block, axis=0)
    if np.isnan(diffs).all():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def _check_paired(a: ComparedRun, b: ComparedRun) -> None:
    same = (
        a.data_digest == b.data_digest and np.array_equal(a.ids, b.ids) and np.array_equal(a.y, b.y)
    )
    if not same:
        raise DataError(
            f"cannot pair run {b.run_id} ({b.config}, seed {b.seed}) with run {a.run_id} "
            f"({a.config}, seed {a.seed}): they scored different rows or labels (data digests "
            f"{a.data_digest[:12]} and {b.data_digest[:12]}); compare runs on the same data"
        )


def _groups(runs: list[ComparedRun], notes: list[str]) -> dict[str, dict[int, ComparedRun]]:
    """Runs by config digest (first seen first), one per seed: the newest is kept."""
    groups: dict[str, dict[int, ComparedRun]] = {}
    for run in sorted(runs, key=lambda r: r.start_time):
        seeds = groups.setdefault(run.digest, {})
        if run.seed in seeds:
            old = seeds[run.seed]
            notes.append(
                f"run {old.run_id} left out: run {run.run_id} is the same config "
                f"({run.config}) with the same seed {run.seed}, and newer"
            )
        seeds[run.seed] = run
    order = {r.digest: i for i, r in reversed(list(enumerate(runs)))}
    return dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))


def _labelled(groups: dict[str, dict[int, ComparedRun]]) -> dict[str, str]:
    """A display name per config digest: the config's name, with its digest when two
    different configs share a name."""
    names = {d: next(iter(g.values())).config for d, g in groups.items()}
    shared = {n for n in names.values() if list(names.values()).count(n) > 1}
    return {d: f"{n} ({d[:8]})" if n in shared else n for d, n in names.items()}


def compare_runs(
    runs: list[ComparedRun], *, metric: str | None = None, baseline: str | None = None
) -> Comparison:
    """The comparison table of ``runs`` (see the module docstring)."""
    if not runs:
        raise ConfigError("nothing to compare: no finished tf-stacking runs were given")
    tasks = sorted({r.task for r in runs})
    if len(tasks) > 1:
        raise DataError(f"cannot compare runs of different tasks {tasks}; compare one task")
    task = tasks[0]
    chosen = get_metric(metric or runs[0].primary_metric)
    if task not in chosen.tasks:
        raise ConfigError(
            f"--metric {chosen.name} does not apply to a {task} task. Received: --metric "
            f"{metric}; use a metric such as {runs[0].primary_metric}"
        )
    notes: list[str] = []
    groups = _groups(runs, notes)
    labels = _labelled(groups)
    by_label = {label: d for d, label in labels.items()}
    if baseline is not None and baseline not in by_label:
        raise ConfigError(
            f"--baseline {baseline!r} is not one of the compared configs {sorted(by_label)}"
        )
    base_digest = by_label[baseline] if baseline else next(iter(groups))
    base = groups[base_digest]

    def score(run: ComparedRun) -> float:
        return float(chosen(run.y, run.pred, task=task))

    rows = []
    for digest, seeds in groups.items():
        ordered = [seeds[s] for s in sorted(seeds)]
        for run in ordered[1:]:  # a mean over seeds is over one data set
            if run.data_digest != ordered[0].data_digest:
                raise DataError(
                    f"runs {ordered[0].run_id} and {run.run_id} of config {labels[digest]} "
                    f"scored different data (digests {ordered[0].data_digest[:12]} and "
                    f"{run.data_digest[:12]}); compare runs of one data set"
                )
        mean, low, high = t_interval([score(r) for r in ordered])
        row = {
            "config": labels[digest],
            "config_digest": digest,
            "n_seeds": len(ordered),
            "seeds": " ".join(str(s) for s in sorted(seeds)),
            "metric": chosen.name,
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "std": float(np.std([score(r) for r in ordered], ddof=1)) if len(ordered) > 1 else 0.0,
        }
        row.update(_difference(digest == base_digest, seeds, base, score, chosen, task, notes))
        row["run_ids"] = " ".join(r.run_id for r in ordered)
        rows.append(row)
    return Comparison(pd.DataFrame(rows), chosen, labels[base_digest], notes)


def _difference(
    is_base: bool,
    seeds: dict[int, ComparedRun],
    base: dict[int, ComparedRun],
    score: Callable[[ComparedRun], float],
    metric: Metric,
    task: str,
    notes: list[str],
) -> dict[str, Any]:
    empty: dict[str, Any] = {k: float("nan") for k in ("diff", "diff_ci_low", "diff_ci_high")}
    empty |= {"diff_row_low": float("nan"), "diff_row_high": float("nan"), "n_pairs": 0}
    if is_base:
        return empty
    common = sorted(set(seeds) & set(base))
    if not common:
        some = next(iter(seeds.values()))
        notes.append(
            f"{some.config}: no seed in common with the baseline (seeds "
            f"{sorted(seeds)} and {sorted(base)}), so no paired difference"
        )
        return empty
    for s in common:
        _check_paired(base[s], seeds[s])
    diff, low, high = t_interval([score(seeds[s]) - score(base[s]) for s in common])
    y = base[common[0]].y
    row_low, row_high = row_bootstrap(
        metric, task, y, [(seeds[s].pred, base[s].pred) for s in common]
    )
    return {
        "diff": diff,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "diff_row_low": row_low,
        "diff_row_high": row_high,
        "n_pairs": len(common),
    }


# -- formats ------------------------------------------------------------------------------


MISSING = "n/a"  # a value that does not exist (one seed: no interval; the baseline: no Δ)


def _num(v: Any) -> str:
    return MISSING if pd.isna(v) else f"{float(v):.4f}"


def _interval(low: Any, high: Any) -> str:
    return MISSING if pd.isna(low) else f"[{float(low):.4f}, {float(high):.4f}]"


def _cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    m = c.metric.name
    header = [
        "config",
        "seeds",
        f"{m} mean",
        "95% CI (seeds)",
        f"Δ vs {c.baseline}",
        "95% CI (seeds)",
        "95% CI (rows)",
    ]
    body = []
    for r in c.table.itertuples(index=False):
        body.append(
            [
                str(r.config),
                str(r.n_seeds),
                _num(r.mean),
                _interval(r.ci_low, r.ci_high),
                _num(r.diff),
                _interval(r.diff_ci_low, r.diff_ci_high),
                _interval(r.diff_row_low, r.diff_row_high),
            ]
        )
    return header, body


def _caption(c: Comparison) -> str:
    better = "higher" if c.metric.greater_is_better else "lower"
    return (
        f"{c.metric.name} of each config's selected ensemble on its out-of-fold rows "
        f"({better} is better): mean over seeds with a t interval; Δ = config - "
        f"{c.baseline} on the same rows, paired by seed (t interval over seeds) and by row "
        f"(paired bootstrap, {N_RESAMPLES} resamples)."
    )


def to_markdown(c: Comparison) -> str:
    header, body = _cells(c)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + f"\n\n{_caption(c)}\n"


def _tex(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("Δ", r"$\Delta$"),
    ):
        text = text.replace(char, escaped)
    return text


def _minus(text: str) -> str:
    """A negative number with a typeset minus sign (``-0.01`` would print a hyphen)."""
    return re.sub(r"(?<![\w.])-(?=\d)", "$-$", text)


def to_latex(c: Comparison) -> str:
    """A booktabs ``table`` (``\\usepackage{booktabs}``)."""
    header, body = _cells(c)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
        r"\toprule",
        " & ".join(_tex(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_minus(_tex(v)) for v in row) + r" \\" for row in body),
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_tex(_caption(c))}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_csv(c: Comparison) -> str:
    return c.table.to_csv(index=False)


def parse_formats(text: str) -> list[str]:
    """``"md,tex"`` → ``["md", "tex"]``; anything else is a one-line :class:`ConfigError`."""
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(
            f"--format takes a comma-separated list of {', '.join(FORMATS)}. Received: "
            f"--format {text!r}"
        )
    return list(dict.fromkeys(chosen))


def write_tables(c: Comparison, out: Path, formats: Sequence[str]) -> list[Path]:
    """``out/compare.<fmt>`` for each format, all or none (written aside, then renamed)."""
    writers = {"md": to_markdown, "tex": to_latex, "csv": to_csv}
    done: list[Path] = []
    partial: list[tuple[Path, Path]] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = out / f"compare.{fmt}"
            tmp = out / f".compare.{fmt}.partial"
            tmp.write_text(writers[fmt](c), encoding="utf-8")
            partial.append((tmp, path))
        for tmp, path in partial:
            tmp.replace(path)
            done.append(path)
    except OSError as exc:
        raise OutputError(
            f"cannot write the comparison to {str(out)!r}: {exc.strerror or exc}; choose "
            "another --output"
        ) from exc
    finally:
        for tmp, _ in partial:
            tmp.unlink(missing_ok=True)
    return done


def compare_stored(
    run_ids: Sequence[str],
    *,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    metric: str | None = None,
    baseline: str | None = None,
) -> Comparison:
    """Read the runs (ids, or every finished run of ``experiment``) from the MLflow store
    and compare them."""
    from stacking.config import TrackingConfig
    from stacking.tracking import MlflowTracker, fetch_compared_runs, get_tracker

    raw = {"kind": "mlflow", "uri": tracking_uri, "experiment": experiment or "tf-stacking"}
    cfg = TrackingConfig.build(raw)
    tracker = get_tracker(cfg)
    assert isinstance(tracker, MlflowTracker)  # kind: mlflow
    with tempfile.TemporaryDirectory(prefix="stacking-compare-") as tmp:
        stored = fetch_compared_runs(
            tracker, list(run_ids), Path(tmp), experiment=experiment is not None
        )
        runs = [read_run(s) for s in stored]
    if not runs:
        raise DataError(
            f"experiment {experiment!r} has no finished tf-stacking run to compare; "
            "`stacking runs --experiment NAME` lists its runs"
        )
    return compare_runs(runs, metric=metric, baseline=baseline)
