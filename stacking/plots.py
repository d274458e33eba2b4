"""Pictures of a finished results folder: what a researcher looks at first.

:func:`write_plots` reads a results folder's files (``oof.parquet``,
``meta_oof.parquet``, ``leaderboard.csv``, ``weights.csv``, ``metrics.json``) and writes
PNGs into ``<results>/plots/``:

- ``correlation.png``: the base models' OOF correlation (averaged over classes/labels);
  highly correlated base models leave stacking little to gain.
- ``leaderboard.png``: the primary metric per entry and ``delta_vs_best_base`` with its
  bootstrap interval (``ci_low``/``ci_high``).
- ``weights.png``: the selected ensemble's weights, when ``weights.csv`` has rows for it.
- classification: ``confusion.png`` and ``calibration.png`` (reliability diagram);
  binary/multiclass also ``reliability.png``, one reliability diagram per leaderboard entry
  from ``calibration.csv``;
  regression: ``residuals.png``; all from the selected ensemble's OOF predictions.

>>> write_plots("runs/digits-20261129-101500")   # [PosixPath('.../plots/correlation.png'), …]

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``:
no display, no global backend switch (a notebook's inline backend stays as it was).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from stacking.errors import DataError, DataFileNotFoundError
from stacking.metrics import (
    CALIBRATION_BINS,
    calibration_bin_index,
    get_metric,
    pairwise_correlation,
)

# Past these sizes a figure would be drawn too large to read (and to draw: 128 base models
# made a 79-inch correlation heatmap of 16,384 numbers): cells are left unlabelled, the
# figure's side stops growing, and the reliability panels keep the leaderboard's first.
MAX_LABELLED_CELLS = 20  # base models whose correlation cells carry their value
MAX_HEATMAP_INCHES = 16.0
MAX_TICK_LABELS = 60  # past this, every k-th base model is named on the heatmap's axes
MAX_RELIABILITY_PANELS = 24
DPI = 80  # 8 pt text stays legible; a fifth fewer pixels to rasterise and compress than 100
N_BINS = CALIBRATION_BINS  # the bins of the ``ece`` metric
CHAR_INCHES = 0.6 * 10 / 72  # mean width of one character of the 10 pt default font


class Results:
    """The files of one results folder, read lazily, with the names the plots need.

    Parquet files are read column by column as the plots ask (``oof.parquet`` also holds
    the row ids and passthrough features that no plot needs: at 1M rows reading them costs
    more than drawing), and every column is read once for all plots.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataFileNotFoundError(
                f"results folder {str(self.directory)!r} does not exist; pass the --output "
                "folder of a finished `stacking run`"
            )
        self._tables: dict[str, pd.DataFrame] = {}  # read once: three plots read oof.parquet
        self._schemas: dict[str, list[str]] = {}
        self._ensemble: tuple[str, list[str], pd.DataFrame, np.ndarray] | None = None

    def _path(self, name: str, purpose: str) -> Path:
        path = self.directory / name
        if not path.is_file():
            raise DataFileNotFoundError(
                f"results folder {str(self.directory)!r} has no {name} (needed for {purpose}); "
                "pass the folder of a finished `stacking run`"
            )
        return path

    def metrics(self, purpose: str) -> dict:
        return json.loads(self._path("metrics.json", purpose).read_text())

    def table(self, name: str, purpose: str) -> pd.DataFrame:
        """A whole CSV file (small tables: leaderboard, weights)."""
        if name not in self._tables:
            self._tables[name] = pd.read_csv(self._path(name, purpose))
        return self._tables[name]

    def schema(self, name: str, purpose: str) -> list[str]:
        """The column names of a parquet file, from its footer (no data read)."""
        if name not in self._schemas:
            self._schemas[name] = list(pq.read_schema(self._path(name, purpose)).names)
        return self._schemas[name]

    def columns(self, name: str, purpose: str, columns: list[str]) -> pd.DataFrame:
        """Only ``columns`` of a parquet file; each column is read from disk once."""
        cached = self._tables.get(name)
        missing = [c for c in columns if cached is None or c not in cached.columns]
        if missing:
            table = pq.read_table(self._path(name, purpose), columns=missing)
            new = table.to_pandas(split_blocks=True)  # one block per column: no 2-D copy
            cached = new if cached is None else pd.concat([cached, new], axis=1)
            self._tables[name] = cached
        assert cached is not None  # read above when nothing was cached
        return cached[columns]

    def base_models(self, purpose: str) -> list[str]:
        board = self.table("leaderboard.csv", purpose)
        return [str(m) for m in board.loc[board.role == "base", "model"]]

    def ensemble_oof(self, purpose: str) -> tuple[str, list[str], pd.DataFrame, np.ndarray]:
        """Task, output names, the truth (target columns of oof.parquet), ensemble OOF.

        Computed once per :class:`Results` (the confusion and calibration plots share it).
        """
        if self._ensemble is None:
            info = self.metrics(purpose)
            prefix = f"{info['ensemble']}__"
            columns = [c for c in self.schema("meta_oof.parquet", purpose) if c.startswith(prefix)]
            if not columns:
                raise DataError(
                    f"{self.directory / 'meta_oof.parquet'} has no {prefix}* columns for the "
                    f"selected ensemble {info['ensemble']!r}; the folder is incomplete, re-run it"
                )
            outputs = [c.removeprefix(prefix) for c in columns]
            names = target_columns(self.schema("oof.parquet", purpose), self.base_models(purpose))
            truth = self.columns("oof.parquet", purpose, names)
            proba = _matrix(self.columns("meta_oof.parquet", purpose, columns))
            self._ensemble = info["task"], outputs, truth, proba
        return self._ensemble


def _matrix(frame: pd.DataFrame) -> np.ndarray:
    """The frame as float64, column-major: the plots take one column at a time."""
    matrix = np.empty(frame.shape, dtype=float, order="F")
    for k, name in enumerate(frame.columns):
        matrix[:, k] = frame[name].to_numpy()
    return matrix


def target_columns(oof: pd.DataFrame | list[str], base_models: list[str]) -> list[str]:
    """The columns between ``fold`` and the first level-1 column of ``oof.parquet``
    (given as the frame or as its column names)."""
    prefixes = tuple(f"{m}__" for m in base_models)
    columns = list(oof.columns) if isinstance(oof, pd.DataFrame) else list(oof)
    start = columns.index("fold") + 1
    end = next(i for i, c in enumerate(columns) if c.startswith(prefixes))
    return columns[start:end]


def _label_codes(outputs: list[str], truth: pd.DataFrame) -> np.ndarray:
    """Index in ``outputs`` of each row's label (compared as text), -1 when absent.

    Factorises first so that only the distinct labels are turned into text: the old
    ``astype(str)`` of every row cost more than the plots at 1M rows.
    """
    codes, uniques = pd.factorize(truth.iloc[:, 0])
    position = {name: i for i, name in enumerate(outputs)}
    lookup = np.array([position.get(str(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[codes]  # pandas' code -1 (missing label) picks the trailing -1


def _one_hot(task: str, outputs: list[str], truth: pd.DataFrame) -> np.ndarray:
    """The truth as a 0/1 matrix aligned with the ensemble's output columns."""
    if task == "multilabel":
        return truth[outputs].to_numpy(dtype=float)
    codes = _label_codes(outputs, truth)
    matrix = np.zeros((len(codes), len(outputs)), order="F")  # read column by column
    known = np.flatnonzero(codes >= 0)
    matrix[known, codes[known]] = 1.0
    return matrix


def _room(labels: list[str] | pd.Index, *, rotated: bool = False) -> float:
    """Inches that tick labels take across their axis (``rotated``: set at 45 degrees)."""
    longest = max((len(str(label)) for label in labels), default=1) * CHAR_INCHES
    return 0.25 + ((longest + 0.14) * 0.71 if rotated else longest)  # 0.14: a line's height


def _save(
    fig: Figure,
    path: Path,
    *,
    left: float,
    bottom: float,
    top: float = 0.4,
    right: float = 0.25,
    wspace: float = 0.0,
) -> Path:
    """Place the axes with margins in inches, then write the PNG.

    Margins come from the labels' lengths (:func:`_room`) rather than ``tight_layout``,
    which measures every tick label of a figure in one more layout pass: a quarter of
    the plots' time in a warm rerun. ``wspace`` is the gap between side-by-side subplots,
    in inches (figures with a colorbar have one subplot and no gap).
    """
    width, height = fig.get_size_inches()
    columns = max(1, len(fig.axes))
    axes_width = max(0.5, (width - left - right - wspace * (columns - 1)) / columns)
    fig.subplots_adjust(
        left=left / width,
        bottom=bottom / height,
        right=1 - right / width,
        top=1 - top / height,
        wspace=wspace / axes_width,
    )
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_correlation(results: Results, out: Path) -> Path:
    """Heatmap of the base models' OOF correlation, averaged over their common outputs."""
    bases = results.base_models("correlation.png")
    names = results.schema("oof.parquet", "correlation.png")
    outputs = sorted(
        {c.split("__", 1)[1] for c in names if c.split("__", 1)[0] in bases and "__" in c}
    )
    shared = [o for o in outputs if all(f"{b}__{o}" in names for b in bases)]
    if len(bases) < 2 or not shared:
        raise DataError(
            f"{results.directory / 'oof.parquet'} holds {len(bases)} base model(s) with "
            f"shared outputs {shared}; a correlation needs two base models with the same outputs"
        )
    oof = results.columns(
        "oof.parquet", "correlation.png", [f"{b}__{o}" for o in shared for b in bases]
    )
    corr = pairwise_correlation([oof[[f"{b}__{o}" for o in shared]].to_numpy() for b in bases])
    n = len(bases)
    size = min(2.5 + 0.6 * n, MAX_HEATMAP_INCHES)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    step = -(-n // MAX_TICK_LABELS)  # every base model named up to MAX_TICK_LABELS of them
    ticks = list(range(0, n, step))
    named = [bases[i] for i in ticks]
    fontsize = 10 if n <= MAX_LABELLED_CELLS else 6
    ax.set_xticks(ticks, named, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(ticks, named, fontsize=fontsize)
    if n <= MAX_LABELLED_CELLS:
        for (i, j), value in np.ndenumerate(corr):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax)
    ax.set_title(f"OOF correlation of base models ({len(shared)} output(s) averaged)")
    room = 0.6 if fontsize < 10 else 1.0  # tick labels in a smaller font take less room
    return _save(
        fig,
        out / "correlation.png",
        left=_room(named) * room,
        bottom=_room(named, rotated=True) * room,
    )


def pareto_front(cost: np.ndarray, score: np.ndarray, *, greater_is_better: bool) -> np.ndarray:
    """Mask of the entries no other entry beats on both cost (lower) and score: the ones
    worth their cost. Ties on both count as not beaten."""
    better = score if greater_is_better else -score
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        no_worse = (cost <= cost[i]) & (better >= better[i])
        strictly = (cost < cost[i]) | (better > better[i])
        front[i] = not (no_worse & strictly).any()
    return front


def plot_cost(results: Results, out: Path) -> Path:
    """Score against serving cost (``meta.cost``): every entry as a point, the Pareto
    front (entries no cheaper entry scores as well as) joined by a line."""
    metric = results.metrics("cost.png")["primary_metric"]
    board = results.table("leaderboard.csv", "cost.png")
    column = f"cv_{metric}"
    if "seconds_per_1k_rows" not in board or column not in board:
        raise DataError(
            f"{results.directory / 'leaderboard.csv'} has no seconds_per_1k_rows or {column} "
            "column; cost.png needs a run with meta.cost: true"
        )
    cost = board.seconds_per_1k_rows.to_numpy(float)
    score = board[column].to_numpy(float)
    front = pareto_front(cost, score, greater_is_better=get_metric(metric).greater_is_better)
    names = board.model.astype(str).tolist()
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    ax.plot(cost[~front], score[~front], "o", color="tab:blue", alpha=0.6, label="entry")
    order = np.argsort(cost[front])
    ax.plot(cost[front][order], score[front][order], "o-", color="tab:orange", label="Pareto front")
    for i in np.flatnonzero(front):
        ax.annotate(
            names[i], (cost[i], score[i]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    selected = board.selected.astype(bool).to_numpy()
    ax.plot(cost[selected], score[selected], "*", color="black", markersize=12, label="selected")
    ax.set_xlabel("seconds per 1,000 rows (base models the entry uses)")
    ax.set_ylabel(f"{column} ({get_metric(metric).direction})")
    ax.set_title("score against serving cost")
    ax.legend(fontsize=8)
    return _save(fig, out / "cost.png", left=0.9, bottom=0.6)


def plot_leaderboard(results: Results, out: Path) -> Path:
    """Primary metric per entry, and delta vs the best base with its bootstrap interval."""
    metric = results.metrics("leaderboard.png")["primary_metric"]
    board = results.table("leaderboard.csv", "leaderboard.png")
    column = f"cv_{metric}"
    if column not in board.columns:
        raise DataError(
            f"{results.directory / 'leaderboard.csv'} has no column {column!r} for the primary "
            f"metric; received columns {list(board.columns)}"
        )
    names = board.model.astype(str).tolist()
    colors = ["tab:orange" if s else "tab:blue" for s in board.selected.astype(bool)]
    y = np.arange(len(board))
    fig = Figure(figsize=(10, 1.5 + 0.35 * len(board)))
    left, right = fig.subplots(1, 2, sharey=True)
    left.barh(y, board[column], color=colors)
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set_xlabel(column)
    left.set_title("cross-validated score (orange: selected)")
    delta = board.delta_vs_best_base.to_numpy(float)
    low = board.ci_low.to_numpy(float) if "ci_low" in board else np.full_like(delta, np.nan)
    high = board.ci_high.to_numpy(float) if "ci_high" in board else np.full_like(delta, np.nan)
    has_ci = ~np.isnan(low) & ~np.isnan(high)
    err = np.vstack([delta - low, high - delta])
    err[:, ~has_ci] = 0.0
    right.errorbar(delta, y, xerr=np.abs(err), fmt="o", color="tab:blue", capsize=3)
    right.axvline(0.0, color="grey", linewidth=1)
    right.set_xlabel(f"delta_vs_best_base ({metric}) with bootstrap interval")
    right.set_title("difference from the best base model")
    return _save(fig, out / "leaderboard.png", left=_room(names), bottom=0.55, wspace=0.25)


def plot_weights(results: Results, out: Path) -> Path | None:
    """The selected ensemble's weights; ``None`` when ``weights.csv`` has none for it."""
    ensemble = results.metrics("weights.png")["ensemble"]
    weights = results.table("weights.csv", "weights.png")
    rows = weights[weights.candidate.astype(str) == ensemble]
    if rows.empty:
        return None
    label = rows.feature.where(rows.feature.notna(), rows.base_model).fillna("?").astype(str)
    table = rows.assign(label=label).pivot_table(
        index="label", columns="output", values="weight", aggfunc="sum", sort=False
    )
    fig = Figure(
        figsize=(max(6.0, 3 + 0.6 * table.shape[1]), max(2.6, 1.5 + 0.22 * table.shape[0]))
    )
    ax = fig.subplots()
    if table.shape[1] == 1:
        ax.barh(np.arange(len(table)), table.iloc[:, 0].to_numpy(float))
        ax.set_yticks(np.arange(len(table)), table.index)
        ax.invert_yaxis()
        ax.set_xlabel(f"weight (output {table.columns[0]})")
        bottom = 0.55
    else:
        limit = float(np.nanmax(np.abs(table.to_numpy(float)))) or 1.0
        image = ax.imshow(
            table.to_numpy(float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto"
        )
        ax.set_xticks(range(table.shape[1]), table.columns.astype(str))
        ax.set_yticks(range(table.shape[0]), table.index)
        ax.set_xlabel("output")
        bottom = 0.3 + _room(table.columns)
        fig.colorbar(image, ax=ax)
    ax.set_title(f"weights of the selected ensemble {ensemble!r}")
    return _save(fig, out / "weights.png", left=_room(table.index), bottom=bottom)


def plot_confusion(results: Results, out: Path) -> Path:
    """Confusion matrix of the ensemble's OOF labels (multilabel: one 2x2 per label)."""
    task, outputs, truth, proba = results.ensemble_oof("confusion.png")
    _require_classification(task, results, "confusion.png")
    if task == "multilabel":
        actual = truth[outputs].to_numpy(dtype=float)
        matrices = [_counts(actual[:, k], proba[:, k] >= 0.5, 2) for k in range(len(outputs))]
        ticks, titles = ["0", "1"], [f"label {o}" for o in outputs]
    else:
        # A label absent from the outputs counts as the first output, as argmax of its
        # all-zero one-hot row always did.
        actual = np.maximum(_label_codes(outputs, truth), 0)
        matrices = [_counts(actual, proba.argmax(1), len(outputs))]
        ticks, titles = outputs, ["OOF confusion matrix"]
    fig = Figure(figsize=(3.2 * len(matrices) + 1, 3.5 + 0.15 * len(ticks)))
    for ax, matrix, title in zip(np.atleast_1d(fig.subplots(1, len(matrices))), matrices, titles):
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            # White on the darker half of the colour scale, which spans min..max.
            color = "white" if value > (matrix.min() + matrix.max()) / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(len(ticks)), ticks, rotation=45, ha="right")
        ax.set_yticks(range(len(ticks)), ticks)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    side = 0.3 + _room(ticks)  # the y label "true" and the tick labels
    room = {"left": side, "bottom": 0.3 + _room(ticks, rotated=True), "wspace": side}
    return _save(fig, out / "confusion.png", **room)


def _counts(actual: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """``n x n`` counts of (actual, predicted) pairs: one ``bincount`` over all rows."""
    pairs = actual.astype(np.int64) * n + predicted.astype(np.int64)
    return np.bincount(pairs, minlength=n * n).reshape(n, n)


def calibration_bins(
    proba: np.ndarray, actual: np.ndarray, n_bins: int = N_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column and bin of the predicted probability: row count, mean prediction and
    observed frequency, each of shape ``(n_columns, n_bins)`` (NaN means where a bin is empty).

    Bins are :func:`~stacking.metrics.calibration_bin_index`'s, the ``ece`` metric's; the
    sums come from one ``np.bincount`` per column instead of a boolean mask per bin,
    so the cost is a few passes over the rows whatever ``n_bins``.
    """
    shape = (proba.shape[1], n_bins)
    count, sum_p, sum_y = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)
    for k in range(proba.shape[1]):
        bins = calibration_bin_index(proba[:, k], n_bins)
        count[k] = np.bincount(bins, minlength=n_bins)
        sum_p[k] = np.bincount(bins, weights=proba[:, k], minlength=n_bins)
        sum_y[k] = np.bincount(bins, weights=actual[:, k], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, sum_p / count, sum_y / count


def plot_calibration(results: Results, out: Path) -> Path:
    """Reliability diagram: observed frequency against mean predicted probability per bin,
    one line per class (binary: the positive class; multilabel: per label)."""
    task, outputs, truth, proba = results.ensemble_oof("calibration.png")
    _require_classification(task, results, "calibration.png")
    shown = slice(1, 2) if task == "binary" else slice(None)  # views, no copy of the rows
    count, mean_p, freq = calibration_bins(
        proba[:, shown], _one_hot(task, outputs, truth)[:, shown]
    )
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    for row, k in enumerate(range(len(outputs))[shown]):
        used = count[row] > 0
        ax.plot(mean_p[row, used], freq[row, used], marker="o", label=str(outputs[k]))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability of the ensemble's OOF probabilities")
    ax.legend(fontsize=8)
    return _save(fig, out / "calibration.png", left=0.7, bottom=0.55)


def reliability_panels(names: list[str], board: pd.DataFrame) -> list[str]:
    """The entries drawn when there are more than :data:`MAX_RELIABILITY_PANELS`: the
    leaderboard's first, in its order, with the selected entry always among them."""
    known = set(names)
    keep = [m for m in board.model.astype(str) if m in known][:MAX_RELIABILITY_PANELS]
    selected = [m for m in board.model.astype(str)[board.selected.astype(bool)] if m in known]
    if selected and selected[0] not in keep:
        keep[-1] = selected[0]
    return keep


def plot_reliability(results: Results, out: Path) -> Path:
    """One small reliability diagram per leaderboard entry, from ``calibration.csv`` (the
    bins of the ``ece`` metric), each titled with the entry's ECE; the single-model and
    stacked candidates side by side show which combiner calibrates and which does not."""
    table = results.table("calibration.csv", "reliability.png")
    names = list(dict.fromkeys(table.model.astype(str)))
    total = len(names)
    if total > MAX_RELIABILITY_PANELS:
        names = reliability_panels(names, results.table("leaderboard.csv", "reliability.png"))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        part = table[table.model.astype(str) == name]
        used = part.rows > 0
        gap = (part.share * (part.mean_confidence - part.observed).abs())[used].sum()
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.plot(part.mean_confidence[used], part.observed[used], marker="o")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE {gap:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("mean confidence (binary: positive class; multiclass: top class)", fontsize=8)
    fig.supylabel("observed frequency", fontsize=8)
    if len(names) < total:
        fig.suptitle(f"the leaderboard's first {len(names)} of {total} entries", fontsize=8)
    # a grid, which _save (one row of axes) does not place: margins in inches here
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=0.6 / width,
        right=1 - 0.2 / width,
        bottom=0.6 / height,
        top=1 - 0.2 / height,
        wspace=0.35,
        hspace=0.6,
    )
    path = out / "reliability.png"
    fig.savefig(path, dpi=DPI, format="png")
    return path


# Every row as a dot. Line2D markers, which Agg stamps from one cached marker, draw 1M rows
# in about 60 % of the time of ``scatter(s=8)`` (a path collection); same size (edge
# included: 1.5 pt) and alpha.
_DOTS = {
    "marker": "o",
    "markersize": 8**0.5 + 1.5,
    "markeredgewidth": 0,
    "alpha": 0.6,
    "linestyle": "",
}


def plot_residuals(results: Results, out: Path) -> Path:
    """Predicted vs true and residuals vs predicted of the ensemble's OOF values."""
    task, _, truth, pred = results.ensemble_oof("residuals.png")
    if task != "regression":
        raise DataError(f"residuals.png is for regression; {results.directory} holds a {task} run")
    y, p = truth.iloc[:, 0].to_numpy(float), pred[:, 0]
    fig = Figure(figsize=(10, 4.5))
    left, right = fig.subplots(1, 2)
    left.plot(y, p, **_DOTS)
    bounds = [min(y.min(), p.min()), max(y.max(), p.max())]
    left.plot(bounds, bounds, linestyle="--", color="grey")
    left.set_xlabel("true")
    left.set_ylabel("predicted (OOF)")
    right.plot(p, y - p, **_DOTS)
    right.axhline(0.0, color="grey", linewidth=1)
    right.set_xlabel("predicted (OOF)")
    right.set_ylabel("residual (true - predicted)")
    fig.suptitle("OOF residuals of the selected ensemble")
    return _save(fig, out / "residuals.png", left=0.8, bottom=0.55, top=0.6, wspace=0.9)


def _require_classification(task: str, results: Results, name: str) -> None:
    if task == "regression":
        raise DataError(f"{name} is for classification; {results.directory} holds a regression run")


def write_plots(results_dir: str | Path) -> list[Path]:
    """Write every plot that fits the run's task into ``results_dir/plots/``; return them.

    Raises :class:`~stacking.errors.DataFileNotFoundError` when a needed file is missing.
    """
    results = Results(results_dir)
    task = results.metrics("the plots")["task"]
    out = results.directory / "plots"
    out.mkdir(exist_ok=True)
    written = [plot_leaderboard(results, out)]
    if len(results.base_models("correlation.png")) >= 2:
        written.append(plot_correlation(results, out))
    weights = plot_weights(results, out)
    if weights is not None:
        written.append(weights)
    if "seconds_per_1k_rows" in results.table("leaderboard.csv", "cost.png"):
        written.append(plot_cost(results, out))
    if task == "regression":
        written.append(plot_residuals(results, out))
    else:
        written += [plot_confusion(results, out), plot_calibration(results, out)]
        if task != "multilabel" and (results.directory / "calibration.csv").is_file():
            written.append(plot_reliability(results, out))
    return written
