"""Nested cross-validation of the selection, and repeated meta-level splits, on level-1
matrices built for them (no base models needed: the meta level reads only these)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.model_selection import StratifiedKFold

from stacking.config import CandidateConfig, DataConfig, FoldsConfig
from stacking.data import load_dataset
from stacking.errors import ConfigError
from stacking.folds import FoldPlan, make_fold_plan, resplit_fold_plan
from stacking.meta import fit_levels, make_candidate, nested_selection, repeated_oof
from stacking.metrics import get_metric

N, M = 300, 12  # rows, base models


def _noise(seed=0, n_splits=5):
    """Binary labels that are pure noise, and M 'base models' whose probabilities are noise
    too: every candidate is at chance, so any edge a winner shows is selection optimism."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    blocks = rng.uniform(0.05, 0.95, (N, M))
    folds = np.empty(N, dtype=int)
    splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(blocks, y)):
        folds[test] = k
    return blocks, y, FoldPlan(ids=np.arange(N), folds=folds)


def _candidates(*specs):
    return [[make_candidate(s, task="binary") for s in specs]]


# One fixed candidate per base model (a one-hot weighted mean): each scores like its noise
# model, so the best of them looks better than chance by selection alone.
_PICKERS = [
    CandidateConfig(
        name=f"model_{j}", estimator="weighted", params={"weights": np.eye(M)[j].tolist()}
    )
    for j in range(M)
]


def _kwargs():
    return {"task": "binary", "n_outputs": 2, "columns_per_model": 1}


def test_nested_selection_on_noise_is_at_chance_while_the_winner_looks_better():
    """Over eight draws of noise: the winner's own score is above chance by selection
    alone (>= the nested score in every draw); the nested score is at chance on average.
    Predicting outer rows with the winner chosen on all rows would score like the winner."""
    auc = get_metric("roc_auc")
    levels = _candidates(*_PICKERS)
    winner_scores, nested_scores = [], []
    for seed in range(8):
        blocks, y, plan = _noise(seed)
        own, _ = fit_levels(blocks, blocks, y, plan, levels, **_kwargs())
        own_scores = {name: auc(y, oof, task="binary") for name, oof in own[-1].items()}
        nested = nested_selection(blocks, blocks, y, plan, levels, metric="roc_auc", **_kwargs())
        assert len(nested.winners) == plan.n_splits
        assert set(nested.winners) <= set(own_scores)
        winner_scores.append(max(own_scores.values()))  # the ensemble's leaderboard score
        nested_scores.append(auc(y, nested.oof, task="binary"))
        assert winner_scores[-1] >= nested_scores[-1] - 1e-12, seed

    assert abs(np.mean(nested_scores) - 0.5) < 0.04, nested_scores
    assert np.mean(winner_scores) > 0.54, winner_scores  # the optimism of the best of twelve


def test_nested_selection_of_a_combiner_is_its_own_oof():
    """The mean learns nothing from rows, so its outer-fold predictions are its OOF ones:
    a row predicted from the wrong outer fold, or misplaced, would break the equality."""
    blocks, y, plan = _noise(seed=1)
    levels = _candidates("mean")
    own, _ = fit_levels(blocks, blocks, y, plan, levels, **_kwargs())
    nested = nested_selection(blocks, blocks, y, plan, levels, metric="log_loss", **_kwargs())
    assert nested.winners == ["mean"] * plan.n_splits
    np.testing.assert_allclose(nested.oof, own[-1]["mean"])
    np.testing.assert_allclose(nested.oof[:, 1], blocks.mean(axis=1))


def test_nested_selection_picks_per_outer_fold_by_the_inner_score():
    """One base model carries the label; a candidate reading only noise loses every fold."""
    blocks, y, plan = _noise(seed=2)
    blocks[:, 0] = np.where(y == 1, 0.8, 0.2)
    levels = _candidates(
        CandidateConfig(name="mean", estimator="mean"),
        CandidateConfig(name="logistic", estimator="logistic"),
    )
    nested = nested_selection(blocks, blocks, y, plan, levels, metric="log_loss", **_kwargs())
    assert nested.winners == ["logistic"] * plan.n_splits
    assert get_metric("accuracy")(y, nested.oof, task="binary") == 1.0


def test_nested_selection_of_two_levels_uses_the_last_level():
    blocks, y, plan = _noise(seed=3)
    levels = [
        [make_candidate(s, task="binary") for s in ("mean", "logistic")],
        [make_candidate(CandidateConfig(name="top", estimator="mean"), task="binary")],
    ]
    own, _ = fit_levels(blocks, blocks, y, plan, levels, **_kwargs())
    assert list(own[-1]) == ["top"]
    nested = nested_selection(blocks, blocks, y, plan, levels, metric="log_loss", **_kwargs())
    assert nested.winners == ["top"] * plan.n_splits
    assert abs(get_metric("roc_auc")(y, nested.oof, task="binary") - 0.5) < 0.1


def test_nested_selection_needs_three_folds():
    blocks, y, plan = _noise(n_splits=2)
    with pytest.raises(ConfigError, match=r"meta.nested needs .* at least 3 folds.*Received: 2"):
        levels = _candidates("mean")
        nested_selection(blocks, blocks, y, plan, levels, metric="log_loss", **_kwargs())


# -- repeats ----------------------------------------------------------------------------


def _dataset(tmp_path, n=120):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "sample": [f"s{i:03d}" for i in range(n)],
            "x": rng.normal(size=n),
            "label": np.repeat([0, 0, 1], n // 3),
            "patient": rng.permutation(np.arange(n) // 4),
        }
    )
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return load_dataset(DataConfig(train=path, target="label", id="sample"))


@pytest.mark.parametrize(("kind", "extra"), [("stratified", {}), ("group", {"group": "patient"})])
def test_resplit_is_seeded_and_differs_from_the_fold_plan(tmp_path, kind, extra):
    data = _dataset(tmp_path)
    cfg = FoldsConfig(kind=kind, n_splits=4, **extra)
    plan = make_fold_plan(cfg, data)
    first, again = resplit_fold_plan(cfg, data, 1), resplit_fold_plan(cfg, data, 1)
    second = resplit_fold_plan(cfg, data, 2)
    assert_array_equal(first.folds, again.folds)
    assert len({plan.digest, first.digest, second.digest}) == 3
    assert make_fold_plan(cfg, data).digest == plan.digest  # the fold plan itself is unchanged


def test_resplit_never_splits_a_group(tmp_path):
    data = _dataset(tmp_path)
    cfg = FoldsConfig(kind="group", group="patient", n_splits=4)
    patients = data.train["patient"].to_numpy()
    for repeat in range(1, 6):
        plan = resplit_fold_plan(cfg, data, repeat)
        folds_per_patient = pd.Series(plan.folds).groupby(patients).nunique()
        assert folds_per_patient.max() == 1, repeat


def test_resplit_keeps_strata(tmp_path):
    data = _dataset(tmp_path)
    cfg = FoldsConfig(kind="stratified", n_splits=4)
    for repeat in (1, 2):
        plan = resplit_fold_plan(cfg, data, repeat)
        for k in range(4):
            assert_array_equal(np.bincount(data.y[plan.test_index(k)]), [20, 10])


def test_resplit_of_a_fold_column_is_refused(tmp_path):
    data = _dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"meta.repeats .* column 'patient'.*folds.kind"):
        resplit_fold_plan(FoldsConfig(column="patient"), data, 1)


def test_repeated_oof_of_a_combiner_has_no_spread_and_a_learner_has_some():
    blocks, y, plan = _noise(seed=4)
    plans = [plan, *(_noise(seed=s)[2] for s in (5, 6))]
    levels = _candidates("mean", "logistic")
    oofs = repeated_oof(blocks, blocks, y, plans, levels, **_kwargs())
    loss = get_metric("log_loss")
    mean_scores = [loss(y, o, task="binary") for o in oofs["mean"]]
    learned = [loss(y, o, task="binary") for o in oofs["logistic"]]
    assert len(mean_scores) == len(learned) == 3
    assert np.std(mean_scores) == 0.0
    assert np.std(learned) > 0.0


# -- in a run ---------------------------------------------------------------------------


def _run(project, tmp_path, **changes):
    from stacking import Experiment

    cfg = project.config(tmp_path, **{"meta.candidates": ["mean", "logistic"], **changes})
    return Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()


def test_nested_and_repeats_in_a_run_beside_the_winners_own_score(binary_project, tmp_path):
    import json

    import mlflow

    plain = _run(binary_project, tmp_path / "plain")
    result = _run(binary_project, tmp_path / "a", **{"meta.nested": True, "meta.repeats": 3})
    again = _run(binary_project, tmp_path / "b", **{"meta.nested": True, "meta.repeats": 3})
    board = result.leaderboard.set_index("model")

    # Defaults change nothing: the same columns and numbers as a run without the options.
    added = ("_selected_nested", "_repeat_mean", "_repeat_std", "_repeats")
    new = [c for c in board.columns if c.endswith(added)]
    # three metrics: nested, repeat mean and repeat spread; the interval over repeats
    assert len(new) == 3 * 3 + 3
    pd.testing.assert_frame_equal(result.leaderboard.drop(columns=new), plain.leaderboard)
    pd.testing.assert_frame_equal(result.leaderboard, again.leaderboard)  # same seed, same board

    # The nested score sits on the selected row only, and is a real score of the selection.
    nested = board["cv_log_loss_selected_nested"]
    assert nested.notna().tolist() == board["selected"].tolist()
    recorded = json.loads((result.output_dir / "metrics.json").read_text())
    assert recorded["selected_nested"]["winners"][0] in {"mean", "logistic"}
    assert len(recorded["selected_nested"]["winners"]) == 3
    value = recorded["selected_nested"]["scores"]["cv_log_loss_selected_nested"]
    assert value == pytest.approx(nested[result.ensemble])
    assert 0 < value < np.log(2)  # better than a coin: the binary project has signal
    parent = mlflow.MlflowClient(tracking_uri=load_tracking_uri(result)).get_run(result.run_id)
    assert parent.data.metrics["cv_log_loss_selected_nested"] == pytest.approx(value)

    # Repeats: fixed OOF predictions (base models, the mean) have no spread; the learned
    # candidate's first split is the fold plan's, the others differ.
    std = board["cv_log_loss_repeat_std"]
    assert std[["wide", "logit", "outside", "base_mean", "mean"]].eq(0).all()
    assert std["logistic"] > 0
    np.testing.assert_allclose(
        board.loc["mean", "cv_log_loss_repeat_mean"], board.loc["mean", "cv_log_loss"]
    )
    splits = recorded["entries"]["logistic"]["repeat_scores"]["log_loss"]
    assert len(splits) == 3 and splits[0] == pytest.approx(board.loc["logistic", "cv_log_loss"])
    assert np.mean(splits) == pytest.approx(board.loc["logistic", "cv_log_loss_repeat_mean"])
    # The interval over repeats: the fold plan's own for the mean (the same on every
    # split), the difference averaged over the splits for the learned candidate.
    single = board.loc["mean", ["delta_vs_best_base", "ci_low", "ci_high"]].to_numpy(float)
    over = board.loc["mean", ["delta_vs_best_base_repeats", "ci_low_repeats", "ci_high_repeats"]]
    np.testing.assert_allclose(over.to_numpy(float), single, rtol=1e-12)
    best_base = board.loc[board.role == "base", "cv_log_loss"].min()
    assert board.loc["logistic", "delta_vs_best_base_repeats"] == pytest.approx(
        board.loc["logistic", "cv_log_loss_repeat_mean"] - best_base
    )
    low, high = board.loc["logistic", ["ci_low_repeats", "ci_high_repeats"]]
    assert low < board.loc["logistic", "delta_vs_best_base_repeats"] < high
    assert board.loc[["wide", "logit", "outside"], "ci_low_repeats"].isna().all()
    ensemble_std = board.loc[result.ensemble, "cv_log_loss_repeat_std"]
    assert parent.data.metrics["cv_log_loss_repeat_std"] == pytest.approx(ensemble_std)


def load_tracking_uri(result) -> str:
    import yaml

    config = yaml.safe_load((result.output_dir / "config.resolved.yaml").read_text())
    return config["tracking"]["uri"]


def test_nested_with_two_folds_is_refused_before_any_model_runs(binary_project, tmp_path, capsys):
    from stacking.cli import main

    cfg = binary_project.config(tmp_path, **{"meta.nested": True, "folds.n_splits": 2})
    code = main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("error: meta.nested needs a fold plan of at least 3 folds"), err
    assert "Received: 2 folds" in err[0]
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "cache").exists()  # refused before any base model predicted


def test_nested_score_of_a_run_on_noise_labels_is_at_chance(binary_project, tmp_path):
    """The shared project's models and fold plan, with the labels permuted: every base
    model is at chance, and so is the nested score, reported beside the winner's own."""
    from stacking import Experiment, load_config, load_dataset, make_fold_plan

    original = load_config(binary_project.config(tmp_path / "original"))
    plan = make_fold_plan(original.folds, load_dataset(original.data))
    train = pd.read_csv(original.data.train)
    assert train["id"].tolist() == plan.ids.tolist()
    train["fold"] = plan.folds  # the plan the fold models were trained with
    train["y"] = np.random.default_rng(0).permutation(train["y"].to_numpy())
    train.to_csv(tmp_path / "noise.csv", index=False)
    pickers = [
        CandidateConfig(name=f"only_{m}", estimator="weighted", params={"weights": w}).model_dump()
        for m, w in [("wide", [1, 0, 0]), ("logit", [0, 1, 0]), ("outside", [0, 0, 1])]
    ]
    changes = {
        "data.train": str(tmp_path / "noise.csv"),
        "folds.column": "fold",
        "metrics": ["roc_auc", "log_loss"],
        "meta.candidates": ["mean", "logistic", "nnls", *pickers],
        "meta.nested": True,
    }
    cfg = binary_project.config(tmp_path, **changes)
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    board = result.leaderboard.set_index("model")

    assert (board.loc[["wide", "logit", "outside"], "cv_roc_auc"] - 0.5).abs().max() < 0.15
    row = board.loc[result.ensemble]
    assert np.isfinite(row["cv_roc_auc"]) and np.isfinite(row["cv_roc_auc_selected_nested"])
    assert abs(row["cv_roc_auc_selected_nested"] - 0.5) < 0.12, row.to_dict()
    winners = result.metrics["selected_nested"]["winners"]
    assert len(winners) == 3 and set(winners) <= set(board.index)
