"""``stacking run --seeds`` and ``stacking compare``: runs over seeds nested in a real
MLflow store, and a table whose numbers are recomputed here from the stored files.

The members are prediction files (no TensorFlow model): four noisy "models" of a
3-class target, predicted on a fold plan written beside the data. Two configs stack them,
both with ensemble selection over random bags (their predictions change with the seed, so
pairing by seed matters): ``bagged`` and ``wide`` (fewer, larger bags).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import sqlite_store
from scipy import stats
from sklearn.metrics import log_loss

from stacking.cli import main
from stacking.compare import (
    ComparedRun,
    compare_runs,
    parse_formats,
    row_bootstrap,
    t_interval,
    to_latex,
    to_markdown,
)
from stacking.errors import ConfigError, DataError
from stacking.metrics import get_metric
from stacking.seeds import config_digest, parse_seeds, seeded_config

CLASSES = ["ant", "bee", "cat"]
NOISE = (1.0, 1.1, 1.2, 1.4)  # four members of similar quality: bags change the mix
SEEDS = [0, 1, 2]


def _members(root: Path, n: int = 150) -> None:
    """train.csv, folds.csv and three members' OOF files (noisy softmax of the truth)."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, n)
    ids = [f"r{i:03d}" for i in range(n)]
    folds = np.arange(n) % 3
    pd.DataFrame({"id": ids, "x": rng.normal(size=n), "y": np.array(CLASSES)[y]}).to_csv(
        root / "train.csv", index=False
    )
    pd.DataFrame({"id": ids, "fold": folds}).to_csv(root / "folds.csv", index=False)
    for m, noise in enumerate(NOISE):
        logits = 1.2 * np.eye(3)[y] + noise * rng.normal(size=(n, 3))
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame = pd.DataFrame(proba, columns=CLASSES)
        frame.insert(0, "fold", folds)
        frame.insert(0, "id", ids)
        frame.to_csv(root / f"m{m}_oof.csv", index=False)


def _config(root: Path, name: str, candidates: list, uri: str) -> Path:
    raw = {
        "name": name,
        "data": {"train": "train.csv", "id": "id", "target": "y"},
        "folds": {"file": "folds.csv"},
        "base_models": {
            f"m{m}": {"predictions": {"oof": f"m{m}_oof.csv"}} for m in range(len(NOISE))
        },
        "meta": {"candidates": candidates, "bootstrap": 20},
        "tracking": {"uri": uri, "experiment": "paper"},
        "cache": {"dir": str(root / "cache")},
        "plots": False,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


BAGGED = [
    {"name": "bagged", "estimator": "selection", "params": {"n_bags": 5, "bag_fraction": 0.5}}
]
WIDE = [{"name": "wide", "estimator": "selection", "params": {"n_bags": 3, "bag_fraction": 0.75}}]


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory):
    """Two configs, each run over seeds 0-2 with `stacking run --seeds` (six runs)."""
    root = tmp_path_factory.mktemp("seeds")
    _members(root)
    uri = sqlite_store(root)
    bagged = _config(root, "bagged", BAGGED, uri)
    wide = _config(root, "wide", WIDE, uri)
    for path, seeds in ((bagged, "0-2"), (wide, "0,1,2")):
        out = root / f"runs-{path.stem}"
        argv = ["run", str(path), "--seeds", seeds, "--output", str(out), "--quiet"]
        assert main(argv) == 0
    return root, uri


def _children(uri: str) -> pd.DataFrame:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("paper")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return pd.DataFrame(
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "parent": r.data.tags.get("mlflow.parentRunId"),
            "role": r.data.tags.get("stacking.role"),
            "seed": r.data.tags.get("stacking.seed"),
            "param_seed": r.data.params.get("seed"),
            "meta_seed": r.data.params.get("meta.seed"),
            "seeds": r.data.params.get("seeds"),
            "cv_log_loss": r.data.metrics.get("cv_log_loss"),
        }
        for r in runs
    )


@pytest.mark.e2e
def test_run_seeds_nests_one_run_per_seed_under_a_parent(seeded_runs):
    root, uri = seeded_runs
    runs = _children(uri)
    parents = runs[runs.role == "seeds"]
    assert sorted(parents.name) == ["bagged", "wide"]
    assert set(parents.seeds) == {"0,1,2"}
    for parent in parents.itertuples():
        kids = runs[runs.parent == parent.run_id].sort_values("seed")
        assert kids.seed.tolist() == ["0", "1", "2"]
        assert kids.param_seed.tolist() == kids.meta_seed.tolist() == ["0", "1", "2"]
        assert kids.name.tolist() == [f"{parent.name}-seed{s}" for s in SEEDS]
        assert kids.cv_log_loss.notna().all()
        # each seed's run holds its own base and meta runs
        for kid in kids.run_id:
            assert (runs.parent == kid).sum() == 5  # m0 to m3 and the one candidate
    for name in ("bagged", "wide"):
        for s in SEEDS:  # every seed's results folder, with the seeded config
            config = yaml.safe_load(
                (root / f"runs-{name}" / f"seed-{s}" / "config.resolved.yaml").read_text()
            )
            assert config["meta"]["seed"] == s
            assert config["folds"]["file"].endswith("folds.csv")  # the plan never changes
    bagged = yaml.safe_load((root / "runs-bagged/seed-2/config.resolved.yaml").read_text())
    assert bagged["meta"]["candidates"][0]["params"]["random_state"] == 2


def _stored_oof(uri: str, run_id: str, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the selected entry's OOF probabilities, read from the run's artifacts."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    ensemble = run.data.tags["stacking.ensemble"]
    folder = tmp / run_id
    folder.mkdir()
    oof = pd.read_parquet(client.download_artifacts(run_id, "oof.parquet", str(folder)))
    meta = pd.read_parquet(client.download_artifacts(run_id, "meta_oof.parquet", str(folder)))
    assert (oof["id"] == meta["id"]).all()
    y = oof["y"].map({c: k for k, c in enumerate(CLASSES)}).to_numpy()
    return y, meta[[f"{ensemble}__{c}" for c in CLASSES]].to_numpy()


@pytest.mark.e2e
def test_compare_table_equals_a_recomputation_from_stored_oof(seeded_runs, tmp_path, capsys):
    _, uri = seeded_runs
    out = tmp_path / "table"
    argv = ["compare", "--experiment", "paper", "--tracking-uri", uri, "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| config | seeds | log_loss mean |" in printed
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.md", "compare.tex"]
    table = pd.read_csv(out / "compare.csv").set_index("config")
    assert table.loc[["bagged", "wide"], "n_seeds"].tolist() == [3, 3]

    runs = _children(uri)
    scores: dict[str, dict[int, float]] = {}
    preds: dict[str, dict[int, np.ndarray]] = {}
    y = None
    for parent in runs[runs.role == "seeds"].itertuples():
        for kid in runs[runs.parent == parent.run_id].itertuples():
            y, p = _stored_oof(uri, kid.run_id, tmp_path)
            s = int(kid.seed)
            preds.setdefault(parent.name, {})[s] = p
            scores.setdefault(parent.name, {})[s] = log_loss(y, p, labels=[0, 1, 2])
            # the stored OOF predictions give the score the run recorded
            assert scores[parent.name][s] == pytest.approx(kid.cv_log_loss, rel=1e-9)
    for name in ("bagged", "wide"):
        values = np.array([scores[name][s] for s in SEEDS])
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        row = table.loc[name]
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert row["ci_low"] == pytest.approx(values.mean() - half, rel=1e-9, abs=1e-12)
        assert row["ci_high"] == pytest.approx(values.mean() + half, rel=1e-9, abs=1e-12)
    # seeds move both selections (else pairing by seed would not matter here)
    for name in ("bagged", "wide"):
        assert np.ptp([scores[name][s] for s in SEEDS]) > 1e-6

    # bagged is the baseline (its runs are the oldest); wide - bagged, paired by seed
    diffs = np.array([scores["wide"][s] - scores["bagged"][s] for s in SEEDS])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    wide = table.loc["wide"]
    assert wide["n_pairs"] == 3
    assert wide["diff"] == pytest.approx(diffs.mean(), rel=1e-9)
    assert wide["diff_ci_low"] == pytest.approx(diffs.mean() - half, rel=1e-9)
    assert wide["diff_ci_high"] == pytest.approx(diffs.mean() + half, rel=1e-9)

    # the row interval: the same resampled rows for both configs, difference averaged
    def row_losses(p: np.ndarray) -> np.ndarray:  # log loss is a mean of these
        return -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1))

    gap = np.mean([row_losses(preds["wide"][s]) - row_losses(preds["bagged"][s]) for s in SEEDS], 0)
    draws = np.random.default_rng(0).integers(0, len(y), size=(1000, len(y)))
    low, high = np.percentile(gap[draws].mean(axis=1), [2.5, 97.5])
    assert wide["diff_row_low"] == pytest.approx(low, rel=1e-6)
    assert wide["diff_row_high"] == pytest.approx(high, rel=1e-6)
    assert np.isnan(table.loc["bagged", "diff"])  # the baseline has no difference
    tex = (out / "compare.tex").read_text()
    assert r"\toprule" in tex and "wide" in tex and r"$\Delta$ vs bagged" in tex


@pytest.mark.e2e
def test_compare_run_ids_pick_the_runs_and_the_baseline(seeded_runs, capsys):
    _, uri = seeded_runs
    runs = _children(uri)
    kids = runs[runs.seed.isin(["0", "1"])]
    ids = [r[:12] for r in kids.run_id]  # short ids, as `stacking runs` shows them
    argv = ["compare", *ids, "--tracking-uri", uri, "--baseline", "wide", "--format", "csv"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Δ vs wide" in out
    _header, *rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 and all("| 2 |" in row for row in rows)


@pytest.mark.e2e
def test_compare_refuses_a_seeds_parent_run(seeded_runs, capsys):
    _, uri = seeded_runs
    runs = _children(uri)
    parent = runs[runs.role == "seeds"].run_id.iloc[0]
    assert main(["compare", parent, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run ") and "not a tf-stacking experiment run" in err
    assert len(err.strip().splitlines()) == 1


# -- without runs: seeds, configs, the statistics -----------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("0,2,7", [0, 2, 7]), (" 3 , 1-2", [3, 1, 2])]
)
def test_parse_seeds_reads_ranges_and_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is not a seed or a range"),
        ("a-b", "is not a seed or a range"),
        ("-1", "is not a seed or a range"),
        ("4-2", "ends before it starts"),
        ("1,1", r"names seed\(s\) \[1\] twice"),
        ("0-5000", "more than 1000 runs"),
    ],
)
def test_parse_seeds_refuses_bad_input(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_seeds(text)


def test_run_bad_seeds_is_one_line_exit_2(tmp_path, capsys):
    _members(tmp_path)
    path = _config(tmp_path, "x", ["mean"], f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["run", str(path), "--seeds", "3-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --seeds: the range '3-1' ends before it starts")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing was started
    assert not (tmp_path / "mlflow.db").exists()


def test_compare_help_imports_neither_tensorflow_nor_mlflow(tmp_path):
    from test_fast_commands import _modules_after

    loaded, out = _modules_after(["compare", "--help"], tmp_path)
    assert "--baseline" in out and "--experiment" in out
    assert loaded == {"tensorflow": False, "keras": False, "mlflow": False}


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["compare"], "takes run ids or --experiment NAME, not both nor neither"),
        (["compare", "abc", "--experiment", "x"], "not both nor neither"),
        (["compare", "abc", "--format", "md,pdf"], "--format takes a comma-separated list"),
    ],
)
def test_compare_bad_flags_are_one_line_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_seeded_config_sets_seedable_candidates_only(tmp_path):
    from stacking import load_config

    _members(tmp_path)
    path = _config(tmp_path, "x", ["mean", "default", *BAGGED], "sqlite:///unused.db")
    config = load_config(path)
    seeded = seeded_config(config, 5)
    specs = seeded.meta.candidates
    assert seeded.meta.seed == 5
    assert specs[0] == "mean"  # no random_state to set
    assert specs[1].estimator == "default" and specs[1].params == {"random_state": 5}
    assert specs[2].params == {"n_bags": 5, "bag_fraction": 0.5, "random_state": 5}
    assert seeded.folds == config.folds and seeded.base_models == config.base_models
    # the seed is not part of what makes a config: every seed groups with the unseeded one
    assert config_digest(seeded.to_dict()) == config_digest(config.to_dict())
    other = load_config(path, ["meta.bootstrap=50"])
    assert config_digest(other.to_dict()) != config_digest(config.to_dict())


def _run(config: str, seed: int, pred: np.ndarray, y: np.ndarray, data: str = "d") -> ComparedRun:
    return ComparedRun(
        run_id=f"{config}{seed}",
        config=config,
        digest=config,
        seed=seed,
        data_digest=data,
        task="binary",
        primary_metric="log_loss",
        start_time=seed + (0 if config == "a" else 100),
        ids=np.arange(len(y)).astype(str),
        y=y,
        pred=pred,
    )


def _binary(rng: np.random.Generator, y: np.ndarray, noise: float) -> np.ndarray:
    p = 1 / (1 + np.exp(-(2 * y - 1) - noise * rng.normal(size=len(y))))
    return np.column_stack([1 - p, p])


def test_compare_runs_pairs_by_seed_not_by_position():
    """Config b's runs listed in another seed order still pair with a's run of that seed."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    a = {s: _binary(rng, y, 1.0 + s) for s in SEEDS}
    b = {s: _binary(rng, y, 0.5 + 2 * s) for s in SEEDS}
    runs = [_run("a", s, a[s], y) for s in SEEDS] + [_run("b", s, b[s], y) for s in (2, 0, 1)]
    table = compare_runs(runs).table.set_index("config")
    diffs = [log_loss(y, b[s]) - log_loss(y, a[s]) for s in SEEDS]
    assert table.loc["b", "diff"] == pytest.approx(np.mean(diffs), rel=1e-9)
    assert (table.loc["b", "diff_ci_low"], table.loc["b", "diff_ci_high"]) == pytest.approx(
        stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=stats.sem(diffs)), rel=1e-9
    )


def test_compare_runs_refuses_runs_on_different_rows():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    runs = [_run("a", 0, _binary(rng, y, 1.0), y), _run("b", 0, _binary(rng, y, 1.0), y, "e")]
    with pytest.raises(DataError, match=r"cannot pair run b0 \(b, seed 0\) with run a0"):
        compare_runs(runs)
    same_config = [_run("a", 0, runs[0].pred, y), _run("a", 1, runs[0].pred, y, "e")]
    with pytest.raises(DataError, match=r"runs a0 and a1 of config a scored different data"):
        compare_runs(same_config)
    flipped = 1 - y  # same digest claimed, other labels: still refused
    runs[1] = _run("b", 0, _binary(rng, y, 1.0), flipped)
    with pytest.raises(DataError, match="different rows or labels"):
        compare_runs(runs)


def test_compare_runs_notes_configs_without_common_seeds_and_duplicates():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    runs = [_run("a", 0, _binary(rng, y, 1.0), y), _run("b", 5, _binary(rng, y, 1.0), y)]
    runs.append(_run("a", 0, _binary(rng, y, 2.0), y))
    runs[-1].run_id, runs[-1].start_time = "a0-newer", 50
    c = compare_runs(runs)
    table = c.table.set_index("config")
    assert table.loc["b", "n_pairs"] == 0 and np.isnan(table.loc["b", "diff"])
    assert table.loc["a", "run_ids"] == "a0-newer" and table.loc["a", "n_seeds"] == 1
    assert any("no seed in common" in n for n in c.notes)
    assert any(n.startswith("run a0 left out") for n in c.notes)
    md = to_markdown(c)
    assert md.count("n/a") >= 4 and "lower is better" in md
    assert r"\bottomrule" in to_latex(c)


def test_t_interval_and_row_bootstrap_values():
    assert t_interval([1.0]) == (
        1.0,
        pytest.approx(np.nan, nan_ok=True),
        pytest.approx(np.nan, nan_ok=True),
    )
    mean, low, high = t_interval([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert (low, high) == pytest.approx(
        stats.t.interval(0.95, 2, loc=7 / 3, scale=stats.sem([1.0, 2.0, 4.0]))
    )
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    a, b = _binary(rng, y, 0.5), _binary(rng, y, 2.0)
    metric = get_metric("accuracy")
    low, high = row_bootstrap(metric, "binary", y, [(a, b)])
    hits_a, hits_b = a.argmax(1) == y, b.argmax(1) == y
    draws = np.random.default_rng(0).integers(0, 60, size=(1000, 60))
    boot = hits_a[draws].mean(1) - hits_b[draws].mean(1)
    assert (low, high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert parse_formats("csv,md,csv") == ["csv", "md"]


def test_run_seeds_without_tracking_moves_only_seeded_candidates(tmp_path):
    """Seeds change a random meta-model's predictions, never a deterministic one's (its
    spread over seeds is zero); with tracking off each seed still has its folder."""
    from stacking.seeds import run_seeds

    _members(tmp_path)
    path = _config(tmp_path, "both", [*BAGGED, "default"], "unused")
    done = run_seeds(path, [0, 1], overrides=["tracking.enabled=false"], output_dir=tmp_path / "o")
    assert [r.run_id for r in done] == [None, None]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["seed-0", "seed-1"]
    meta = [pd.read_parquet(tmp_path / "o" / f"seed-{s}" / "meta_oof.parquet") for s in (0, 1)]
    logistic = [c for c in meta[0].columns if c.startswith("logistic__")]
    bagged = [c for c in meta[0].columns if c.startswith("bagged__")]
    assert len(logistic) == len(bagged) == 3
    np.testing.assert_array_equal(meta[0][logistic], meta[1][logistic])
    assert not np.allclose(meta[0][bagged], meta[1][bagged])


@pytest.mark.e2e
def test_reproduce_reruns_one_seed_exactly(seeded_runs, tmp_path, capsys):
    """A seed's run records its seeded config: `stacking reproduce` gives its scores."""
    _, uri = seeded_runs
    runs = _children(uri)
    parent = runs[(runs.role == "seeds") & (runs.name == "bagged")].run_id.iloc[0]
    seed_2 = runs[(runs.parent == parent) & (runs.seed == "2")].run_id.iloc[0]
    argv = ["reproduce", seed_2, "--tracking-uri", uri, "--output", str(tmp_path / "again")]
    assert main(argv) == 0, capsys.readouterr().err
    assert "reproduced: 3 of 3 recorded cv_ metrics equal" in capsys.readouterr().out
