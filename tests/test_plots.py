"""Plots of a results folder, built by hand per task (no TensorFlow: fast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stacking.errors import DataError, DataFileNotFoundError, StackingError
from stacking.plots import (
    N_BINS,
    Results,
    _counts,
    _one_hot,
    calibration_bins,
    plot_calibration,
    plot_confusion,
    plot_correlation,
    plot_leaderboard,
    plot_residuals,
    plot_weights,
    target_columns,
    write_plots,
)

N = 60
OUTPUTS = {
    "binary": ["no", "yes"],
    "multiclass": ["ant", "bee", "cat"],
    "multilabel": ["red", "blue"],
    "regression": ["pred"],
}
PRIMARY = {"regression": "rmse", "multilabel": "log_loss"}


def _truth(task: str, rng) -> pd.DataFrame:
    if task == "regression":
        return pd.DataFrame({"y": rng.normal(size=N)})
    if task == "multilabel":
        return pd.DataFrame({o: rng.integers(0, 2, N) for o in OUTPUTS[task]})
    return pd.DataFrame({"y": rng.choice(OUTPUTS[task], N)})


def _block(task: str, rng) -> np.ndarray:
    k = len(OUTPUTS[task])
    if task == "regression":
        return rng.normal(size=(N, 1))
    if task == "multilabel":
        return rng.uniform(size=(N, k))
    return rng.dirichlet(np.ones(k), N)


def make_results(root, task: str, *, weights: bool = True):
    """A results folder as `stacking run` writes it: two base models, one passthrough
    column, two meta candidates (``stack`` selected), weights, leaderboard, metrics."""
    rng = np.random.default_rng(0)
    out = root / f"results-{task}"
    out.mkdir()
    outputs = OUTPUTS[task]
    base_outputs = outputs[1:] if task == "binary" else outputs  # drop_redundant
    oof = pd.concat(
        [pd.DataFrame({"id": [f"r{i}" for i in range(N)], "fold": np.arange(N) % 3})]
        + [_truth(task, rng)]
        + [
            pd.DataFrame(
                _block(task, rng)[:, -len(base_outputs) :],
                columns=[f"{m}__{o}" for o in base_outputs],
            )
            for m in ("cnn", "mlp")
        ]
        + [pd.DataFrame({"f_0": rng.normal(size=N)})],
        axis=1,
    )
    oof.to_parquet(out / "oof.parquet", index=False)
    meta = oof[["id", "fold"]].copy()
    for candidate in ("mean", "stack"):
        meta[[f"{candidate}__{o}" for o in outputs]] = _block(task, rng)
    meta.to_parquet(out / "meta_oof.parquet", index=False)
    metric = PRIMARY.get(task, "log_loss")
    pd.DataFrame(
        {
            "model": ["stack", "mean", "cnn", "mlp"],
            "role": ["meta", "meta", "base", "base"],
            "level": [2, 2, 1, 1],
            f"cv_{metric}": [0.5, 0.55, 0.6, 0.7],
            "delta_vs_best_base": [-0.1, -0.05, np.nan, np.nan],
            "ci_low": [-0.15, np.nan, np.nan, np.nan],
            "ci_high": [-0.04, np.nan, np.nan, np.nan],
            "selected": [True, False, False, False],
        }
    ).to_csv(out / "leaderboard.csv", index=False)
    rows = [("stack", m, f"{m}__{o}", o, rng.normal()) for m in ("cnn", "mlp") for o in outputs]
    rows += [("stack", None, "f_0", o, 0.1) for o in outputs]
    table = pd.DataFrame(rows, columns=["candidate", "base_model", "feature", "output", "weight"])
    if not weights:
        table = table.iloc[0:0]
    table.to_csv(out / "weights.csv", index=False)
    info = {"task": task, "ensemble": "stack", "primary_metric": metric}
    (out / "metrics.json").write_text(json.dumps(info))
    return out


def assert_png(path, *, min_side: int = 200):
    assert path.is_file(), path
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or non-PNG file
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side, image.size
        assert max(image.size) <= 3000, image.size
        # Not a blank canvas: something was drawn.
        assert len(np.unique(np.asarray(image.convert("L")))) > 10


EXPECTED = {
    "binary": {"leaderboard", "correlation", "weights", "confusion", "calibration"},
    "multiclass": {"leaderboard", "correlation", "weights", "confusion", "calibration"},
    "multilabel": {"leaderboard", "correlation", "weights", "confusion", "calibration"},
    "regression": {"leaderboard", "correlation", "weights", "residuals"},
}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_write_plots_writes_every_plot_of_the_task(tmp_path, task):
    folder = make_results(tmp_path, task)
    written = write_plots(folder)
    assert {p.stem for p in written} == EXPECTED[task]
    assert {p.name for p in (folder / "plots").iterdir()} == {f"{s}.png" for s in EXPECTED[task]}
    for path in written:
        assert path.parent == folder / "plots"
        assert_png(path)


def test_write_plots_skips_weights_without_rows_for_the_ensemble(tmp_path):
    folder = make_results(tmp_path, "multiclass", weights=False)
    assert plot_weights(Results(folder), tmp_path) is None
    assert "weights" not in {p.stem for p in write_plots(folder)}


def test_target_columns_lie_between_fold_and_the_first_base_column(tmp_path):
    oof = pd.read_parquet(make_results(tmp_path, "multilabel") / "oof.parquet")
    assert target_columns(oof, ["cnn", "mlp"]) == ["red", "blue"]


def test_confusion_counts_every_row_once(tmp_path):
    """The confusion plot is built from a matrix whose cells sum to the rows (checked
    through the same helper on the real folder's labels)."""
    task, outputs, truth, proba = Results(make_results(tmp_path, "multiclass")).ensemble_oof("t")
    actual = _one_hot(task, outputs, truth)
    matrix = _counts(actual.argmax(1), proba.argmax(1), len(outputs))
    assert matrix.sum() == N
    assert np.trace(matrix) == int((actual.argmax(1) == proba.argmax(1)).sum())


PLOTS = [
    (plot_correlation, "oof.parquet"),
    (plot_leaderboard, "leaderboard.csv"),
    (plot_weights, "weights.csv"),
    (plot_confusion, "meta_oof.parquet"),
    (plot_calibration, "metrics.json"),
]


@pytest.mark.parametrize(("plot", "missing"), PLOTS, ids=[p.__name__ for p, _ in PLOTS])
def test_plot_refuses_a_folder_without_its_file(tmp_path, plot, missing):
    folder = make_results(tmp_path, "multiclass")
    (folder / missing).unlink()
    with pytest.raises(DataFileNotFoundError, match=rf"has no {missing} .*finished `stacking run`"):
        plot(Results(folder), tmp_path)


def test_plot_residuals_refuses_a_folder_without_meta_oof(tmp_path):
    folder = make_results(tmp_path, "regression")
    (folder / "meta_oof.parquet").unlink()
    with pytest.raises(DataFileNotFoundError, match=r"has no meta_oof\.parquet"):
        plot_residuals(Results(folder), tmp_path)


@pytest.mark.parametrize(
    ("task", "plot", "match"),
    [
        ("regression", plot_confusion, "confusion.png is for classification"),
        ("regression", plot_calibration, "calibration.png is for classification"),
        ("binary", plot_residuals, "residuals.png is for regression; .* binary run"),
    ],
)
def test_plot_refuses_the_wrong_task(tmp_path, task, plot, match):
    with pytest.raises(DataError, match=match):
        plot(Results(make_results(tmp_path, task)), tmp_path)


def test_write_plots_refuses_a_missing_folder(tmp_path):
    with pytest.raises(StackingError, match="does not exist; pass the --output folder"):
        write_plots(tmp_path / "nowhere")


def test_write_plots_refuses_an_ensemble_absent_from_meta_oof(tmp_path):
    folder = make_results(tmp_path, "binary")
    info = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**info, "ensemble": "ghost"}))
    with pytest.raises(DataError, match=r"no ghost__\* columns .*'ghost'"):
        write_plots(folder)


def _masked_bins(proba: np.ndarray, actual: np.ndarray, n_bins: int):
    """The reliability statistics computed directly: one boolean mask per bin and column
    (the code that ``calibration_bins`` replaced)."""
    edges = np.arange(n_bins + 1) / n_bins  # k / n_bins, the nearest float to each edge
    count, mean_p, freq = (np.full((proba.shape[1], n_bins), np.nan) for _ in range(3))
    for k in range(proba.shape[1]):
        bins = np.clip(np.digitize(proba[:, k], edges[1:-1]), 0, n_bins - 1)
        for b in range(n_bins):
            rows = bins == b
            count[k, b] = rows.sum()
            if rows.any():
                mean_p[k, b] = proba[rows, k].mean()
                freq[k, b] = actual[rows, k].mean()
    return count, mean_p, freq


@pytest.mark.parametrize("n_bins", [N_BINS, 7])
def test_calibration_bins_equal_the_per_bin_masks(n_bins):
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(4), 5000)
    proba[:, 3] = rng.uniform(0.0, 0.35, 5000)  # bins above 0.35 stay empty: NaN, count 0
    proba[:12, 0] = np.linspace(0.0, 1.0, n_bins + 1)[np.arange(12) % (n_bins + 1)]  # on edges
    actual = rng.random((5000, 4)) < proba
    count, mean_p, freq = calibration_bins(proba, actual, n_bins)
    want_count, want_p, want_freq = _masked_bins(proba, actual, n_bins)
    np.testing.assert_array_equal(count, want_count)
    assert count.sum() == 4 * 5000 and (count[3, -3:] == 0).all()
    # Same rows in each bin; only the order of summation differs (bincount vs np.mean).
    np.testing.assert_allclose(mean_p, want_p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(freq, want_freq, rtol=1e-12, atol=0)
    assert np.isnan(mean_p[3, -3:]).all() and not np.isnan(mean_p[:3]).any()


def test_one_hot_and_counts_equal_the_direct_computation():
    """Integer labels against text outputs, an unknown label and a missing one, as the old
    ``astype(str)`` comparison and ``np.add.at`` counted them."""
    rng = np.random.default_rng(4)
    labels = pd.Series(rng.integers(0, 4, 300)).astype(object)
    labels[:5] = 7  # not an output: an all-zero row
    labels[5:8] = None
    outputs = ["0", "1", "2", "3"]
    truth = pd.DataFrame({"y": labels})
    want = (labels.astype(str).to_numpy()[:, None] == np.array(outputs)[None, :]).astype(float)
    np.testing.assert_array_equal(_one_hot("multiclass", outputs, truth), want)
    predicted = rng.integers(0, 4, 300)
    expected = np.zeros((4, 4), dtype=int)
    np.add.at(expected, (want.argmax(1), predicted), 1)
    np.testing.assert_array_equal(_counts(want.argmax(1), predicted, 4), expected)


def _many_bases_results(root, n_bases: int):
    """A multiclass results folder with ``n_bases`` base models and one stacked entry."""
    rng = np.random.default_rng(3)
    out = root / "results-many"
    out.mkdir()
    outputs = OUTPUTS["multiclass"]
    names = [f"model_{i:03d}" for i in range(n_bases)]
    frame = {"id": [f"r{i}" for i in range(N)], "fold": np.arange(N) % 3}
    frame["y"] = rng.choice(outputs, N)
    for m in names:
        block = rng.dirichlet(np.ones(len(outputs)), N)
        frame.update({f"{m}__{o}": block[:, j] for j, o in enumerate(outputs)})
    pd.DataFrame(frame).to_parquet(out / "oof.parquet", index=False)
    entries = ["stack", *names]
    pd.DataFrame(
        {
            "model": entries,
            "role": ["meta"] + ["base"] * n_bases,
            "level": [2] + [1] * n_bases,
            "cv_log_loss": np.linspace(0.5, 1.5, len(entries)),
            "selected": [False] * (len(entries) - 1) + [True],  # the last one, on purpose
        }
    ).to_csv(out / "leaderboard.csv", index=False)
    bins = pd.DataFrame(
        [(m, b, 10, 0.1, (b + 0.5) / 10, (b + 0.4) / 10) for m in entries for b in range(10)],
        columns=["model", "bin", "rows", "share", "mean_confidence", "observed"],
    )
    bins.to_csv(out / "calibration.csv", index=False)
    info = {"task": "multiclass", "ensemble": "stack", "primary_metric": "log_loss"}
    (out / "metrics.json").write_text(json.dumps(info))
    return out, entries


def test_many_base_models_give_plots_of_a_readable_size(tmp_path):
    """128 base models once made a 79-inch heatmap of 16,384 labelled cells and 129
    reliability panels; past the limits the figures stop growing (assert_png: ≤ 3000 px)."""
    from stacking.plots import MAX_RELIABILITY_PANELS, plot_reliability, reliability_panels

    out, entries = _many_bases_results(tmp_path, 128)
    assert_png(plot_correlation(Results(out), out))
    assert_png(plot_reliability(Results(out), out))
    board = pd.read_csv(out / "leaderboard.csv")
    panels = reliability_panels(entries, board)
    assert len(panels) == MAX_RELIABILITY_PANELS
    assert panels[:-1] == entries[: MAX_RELIABILITY_PANELS - 1]
    assert panels[-1] == entries[-1]  # the selected entry, last on the leaderboard, is kept


def test_cost_plot_needs_the_cost_columns_and_draws_them(tmp_path):
    from stacking.plots import plot_cost

    out = make_results(tmp_path, "multiclass")
    with pytest.raises(DataError, match=r"meta\.cost: true"):
        plot_cost(Results(out), out)
    assert "cost.png" not in {p.name for p in write_plots(out)}
    board = pd.read_csv(out / "leaderboard.csv")
    board["seconds_per_1k_rows"] = [0.9, 0.5, 0.3, 0.2]
    board.to_csv(out / "leaderboard.csv", index=False)
    assert_png(plot_cost(Results(out), out))
    assert "cost.png" in {p.name for p in write_plots(out)}
