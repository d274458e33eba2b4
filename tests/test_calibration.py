"""Expected calibration error: the ``ece`` metric, ``calibration.csv`` and ``reliability.png``;
the end-to-end run also checks ``diversity.csv`` (test_diversity.py has the rest)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from stacking.evaluate import Entry
from stacking.metrics import (
    CALIBRATION_BINS,
    calibration_bin_index,
    expected_calibration_error,
    get_metric,
)
from stacking.plots import Results, plot_reliability
from stacking.results import calibration_frame
from tests.test_plots import assert_png


def _reference_ece(y, p, task, w=None, n_bins=CALIBRATION_BINS):
    """ECE written out the textbook way: a boolean mask per bin with explicit edges."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    w = np.ones(len(y)) if w is None else np.asarray(w, float)
    if task == "binary":
        conf, hit = p[:, 1], (y == 1).astype(float)
    else:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        last = k == n_bins - 1
        mask = (conf >= lo) & ((conf <= hi) if last else (conf < hi))
        if mask.any():
            gap = np.average(conf[mask], weights=w[mask]) - np.average(hit[mask], weights=w[mask])
            total += w[mask].sum() / w.sum() * abs(gap)
    return total


def _alternating(task: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose calibration gap changes sign from one bin to the next (even bins all
    wrong: gap = confidence > 0; odd bins all right: gap = confidence - 1 < 0), so merging
    or shifting any two bins changes the ECE."""
    k = 2 if task == "binary" else 3
    first = 0 if task == "binary" else 4  # a top-class confidence is at least 1/3
    bins = rng.integers(first, CALIBRATION_BINS, n)
    conf = (bins + rng.uniform(0.05, 0.95, n)) / CALIBRATION_BINS
    hit = bins % 2 == 1
    y = rng.integers(0, k, n)
    if task == "binary":
        y = hit.astype(int)
        return y, np.column_stack([1 - conf, conf])
    top = np.where(hit, y, (y + 1) % k)
    proba = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)
    proba[np.arange(n), top] = conf
    return y, proba


def test_ece_of_a_hand_example():
    # Binary, positive-class probabilities 0.15, 0.15, 0.85, 0.85, 0.55 (bins 1, 1, 8, 8, 5)
    # with truth 0, 1, 1, 1, 0: bin 1 gap |0.15 - 0.5| = 0.35 over 2 rows, bin 8 gap
    # |0.85 - 1| = 0.15 over 2 rows, bin 5 gap |0.55 - 0| over 1 row:
    # (2 * 0.35 + 2 * 0.15 + 0.55) / 5 = 0.31.
    p1 = np.array([0.15, 0.15, 0.85, 0.85, 0.55])
    proba = np.column_stack([1 - p1, p1])
    assert expected_calibration_error([0, 1, 1, 1, 0], proba, "binary") == pytest.approx(0.31)
    # Multiclass: top-class confidence 0.6 right, 0.6 wrong, 0.95 right (bins 6, 6, 9):
    # (2 * |0.6 - 0.5| + |0.95 - 1|) / 3 = 0.25 / 3.
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.02, 0.03, 0.95]])
    assert get_metric("ece")([0, 0, 2], proba, task="multiclass") == pytest.approx(0.25 / 3)


def test_ece_bin_edges_belong_to_the_upper_bin():
    # 0.1 opens bin 1 and 1.0 closes the last bin: an off-by-one in the edges moves rows.
    edges = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.9999, 1.0])
    assert calibration_bin_index(edges).tolist() == [0, 1, 2, 3, 5, 7, 9, 9, 9]
    # Two rows at 0.3 (one right) and two at 0.29 (both right): with 0.3 in bin 3 the
    # gaps are |0.3 - 0.5| and |0.29 - 1|, so ECE = (2 * 0.2 + 2 * 0.71) / 4 = 0.455;
    # had 0.3 fallen in bin 2 with the 0.29 rows the gap would be |0.295 - 0.75|.
    p1 = np.array([0.3, 0.3, 0.29, 0.29])
    proba = np.column_stack([1 - p1, p1])
    assert expected_calibration_error([1, 0, 1, 1], proba, "binary") == pytest.approx(0.455)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_equals_an_independent_computation(task, seed, weighted):
    rng = np.random.default_rng(seed)
    k = 2 if task == "binary" else 4
    y = rng.integers(0, k, 500)
    # Over-confident predictions: sharpened Dirichlet rows, so bins hold real gaps.
    proba = rng.dirichlet(np.full(k, 0.5), 500)
    proba = np.round(proba, 1)  # many values exactly on bin edges
    proba[:, 0] = 1 - proba[:, 1:].sum(axis=1)
    proba = np.clip(proba, 0, 1)
    w = rng.uniform(0.1, 3.0, 500) if weighted else None
    got = get_metric("ece")(y, proba, task=task, sample_weight=w)
    assert got == pytest.approx(_reference_ece(y, proba, task, w), abs=1e-12)
    assert 0 < got < 1


def test_ece_is_lower_is_better_and_zero_when_calibrated():
    metric = get_metric("expected_calibration_error")
    assert metric.name == "ece" and not metric.greater_is_better
    # Every row predicts 0.7 for the positive class and exactly 7 of 10 rows are positive.
    proba = np.tile([0.3, 0.7], (10, 1))
    assert metric([1] * 7 + [0] * 3, proba, task="binary") == pytest.approx(0.0)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_ece_fold_and_bootstrap_scores_equal_the_metric_on_the_rows(task, weighted):
    rng = np.random.default_rng(3)
    y, proba = _alternating(task, 90, rng)
    w = rng.uniform(0.2, 2.0, 90) if weighted else None
    folds = np.arange(90) % 3
    prepared = get_metric("ece").prepare(y, proba, task=task)
    assert prepared.score(w) == pytest.approx(_reference_ece(y, proba, task, w))
    for f, score in enumerate(prepared.fold_scores(folds, 3, w)):
        rows = folds == f
        sub_w = None if w is None else w[rows]
        assert score == pytest.approx(_reference_ece(y[rows], proba[rows], task, sub_w))
    idx = rng.integers(0, 90, (4, 90))
    for b, score in enumerate(prepared.resample_scores(idx, w)):
        rows = idx[b]
        sub_w = None if w is None else w[rows]
        assert score == pytest.approx(_reference_ece(y[rows], proba[rows], task, sub_w))


def test_ece_refuses_regression_and_multilabel():
    with pytest.raises(ValueError, match="metric 'ece' does not apply to a regression task"):
        get_metric("ece")([0.1], [0.2], task="regression")
    with pytest.raises(ValueError, match="does not apply to a multilabel task"):
        get_metric("ece")(np.eye(2), np.eye(2), task="multilabel")


def _entries(rng, n=300):
    y = rng.integers(0, 3, n)
    entries = [
        Entry(name, "base" if name != "stack" else "meta", 1, rng.dirichlet(np.full(3, a), n))
        for name, a in [("cnn", 0.3), ("mlp", 1.0), ("stack", 3.0)]
    ]
    return y, entries


def test_calibration_frame_sums_to_each_entry_ece(tmp_path):
    rng = np.random.default_rng(4)
    y, entries = _entries(rng)
    w = rng.uniform(0.5, 2, len(y))
    table = calibration_frame(entries, y, "multiclass", w)
    assert set(table.model) == {"cnn", "mlp", "stack"}
    assert (table.groupby("model").rows.sum() == len(y)).all()
    for e in entries:
        part = table[table.model == e.name]
        used = part.rows > 0
        ece = (part.share * (part.mean_confidence - part.observed).abs())[used].sum()
        assert ece == pytest.approx(_reference_ece(y, e.oof, "multiclass", w))
    # The reliability plot draws one panel per entry from the table.
    table.to_csv(tmp_path / "calibration.csv", index=False)
    path = plot_reliability(Results(tmp_path), tmp_path)
    assert_png(path)


@pytest.fixture(scope="module")
def finished_run(multiclass_project, tmp_path_factory):
    """One multiclass run that lists ``ece``, with plots and an MLflow store:
    (results folder, run id, tracking URI)."""
    from stacking.experiment import Experiment

    tmp = tmp_path_factory.mktemp("calibration-run")
    cfg = multiclass_project.config(
        tmp, plots=True, metrics=["log_loss", "ece"], **{"meta.bootstrap": 50}
    )
    out = tmp / "out"
    result = Experiment.from_yaml(cfg, output_dir=out, progress=False).run()
    uri = yaml.safe_load(cfg.read_text())["tracking"]["uri"]
    return out, result.metrics["run_id"], uri


@pytest.mark.e2e
def test_a_run_reports_ece_per_candidate_and_writes_the_reliability_plot(finished_run):
    out = finished_run[0]
    board = pd.read_csv(out / "leaderboard.csv")
    info = json.loads((out / "metrics.json").read_text())
    assert info["directions"]["ece"] == "lower"
    table = pd.read_csv(out / "calibration.csv")
    assert set(table.model) == set(board.model)
    oof, meta = pd.read_parquet(out / "oof.parquet"), pd.read_parquet(out / "meta_oof.parquet")
    classes = sorted(oof.y.unique())
    y = oof.y.map({c: i for i, c in enumerate(classes)}).to_numpy()
    checked = 0
    for row in board.itertuples():
        part = table[table.model == row.model]
        used = part.rows > 0
        ece = (part.share * (part.mean_confidence - part.observed).abs())[used].sum()
        assert ece == pytest.approx(row.cv_ece)
        assert info["entries"][row.model]["scores"]["ece"] == pytest.approx(row.cv_ece)
        frame = oof if row.role == "base" else meta
        columns = [f"{row.model}__{c}" for c in classes]
        if all(c in frame.columns for c in columns):  # base_mean entries are not stored
            proba = frame[columns].to_numpy()
            assert row.cv_ece == pytest.approx(_reference_ece(y, proba, "multiclass"))
            checked += 1
    assert checked >= 3  # the base models and the meta candidates, at least
    assert_png(out / "plots" / "reliability.png")


@pytest.mark.e2e
def test_a_run_writes_diversity_csv_to_the_results_and_the_mlflow_run(finished_run):
    out, run_id, uri = finished_run
    table = pd.read_csv(out / "diversity.csv")
    oof = pd.read_parquet(out / "oof.parquet")
    board = pd.read_csv(out / "leaderboard.csv")
    bases = board.model[board.role == "base"].tolist()
    assert len(table) == len(bases) * (len(bases) - 1) // 2
    classes = sorted(oof.y.unique())
    for row in table.itertuples():
        # the run's level-1 features are probabilities (kind: proba), every class kept
        a = oof[[f"{row.model_a}__{c}" for c in classes]].to_numpy().argmax(axis=1)
        b = oof[[f"{row.model_b}__{c}" for c in classes]].to_numpy().argmax(axis=1)
        assert row.disagreement == pytest.approx(np.mean(a != b))
    client = mlflow.MlflowClient(tracking_uri=uri)
    names = {f.path for f in client.list_artifacts(run_id)}
    assert {"diversity.csv", "calibration.csv"} <= names
