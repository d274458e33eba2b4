"""Cost beside score: the base models each entry uses and their parameter count."""

from __future__ import annotations

import numpy as np
import pytest

from stacking.config import CandidateConfig
from stacking.meta import CombinerClassifier, make_candidate
from stacking.meta.weights import models_used

BASES = ["a", "b", "c"]


def test_models_used_follows_non_zero_weights_through_the_levels():
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(30, 3)), rng.integers(0, 2, 30)
    level2 = {
        "ab": CombinerClassifier(method="weighted", weights=[1, 2, 0]).fit(X, y),
        "c": CombinerClassifier(method="weighted", weights=[0, 0, 1]).fit(X, y),
        "all": CombinerClassifier().fit(X, y),
    }
    top = CombinerClassifier(method="weighted", weights=[1, 1, 0]).fit(X, y)
    logistic = make_candidate("logistic", task="binary").estimator.fit(X, y)
    fitted = {**level2, "logistic": logistic, "top": top}
    features = [f"{m}__yes" for m in BASES]
    inputs = {name: (BASES, BASES) for name in level2}
    inputs["logistic"] = (BASES, features)  # reads features, weights them by coef_
    inputs["top"] = (list(level2), list(level2))
    used = models_used(fitted, inputs, BASES, ["no", "yes"])
    assert used == {
        "ab": ["a", "b"],
        "c": ["c"],
        "all": ["a", "b", "c"],
        "logistic": ["a", "b", "c"],
        "top": ["a", "b", "c"],  # "ab" and "c" together
    }
    inputs["top"] = (["ab", "all", "c"], ["ab", "all", "c"])  # weight 0 on "c" now
    top.fit(X, y)
    assert models_used(fitted, inputs, BASES, ["no", "yes"])["top"] == ["a", "b", "c"]
    fitted["top"] = CombinerClassifier(method="weighted", weights=[1, 0, 1]).fit(X, y)
    assert models_used(fitted, inputs, BASES, ["no", "yes"])["top"] == ["a", "b", "c"]
    fitted["top"] = CombinerClassifier(method="weighted", weights=[1, 0, 0]).fit(X, y)
    assert models_used(fitted, inputs, BASES, ["no", "yes"])["top"] == ["a", "b"]


def test_models_used_of_a_learner_without_readable_weights_is_all_it_reads():
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X, y = rng.uniform(size=(30, 2)), rng.integers(0, 2, 30)
    tree = DecisionTreeClassifier(max_depth=1).fit(X, y)  # no weights_ nor coef_
    used = models_used({"tree": tree}, {"tree": ([], ["a__yes", "c__yes"])}, BASES, ["no", "yes"])
    assert used == {"tree": ["a", "c"]}


# Hand counts of the shared project's Keras models (conftest.build_model, 6 features):
# Dense(16, tanh) + Dense(1); Dense(1) alone; Dense(8, tanh) + Dense(1).
WIDE = 6 * 16 + 16 + 16 * 1 + 1  # 129
LOGIT = 6 * 1 + 1  # 7
OUTSIDE = 6 * 8 + 8 + 8 * 1 + 1  # 65
# FLOPs per row of the same models: 2 per multiply-add, 1 per bias addition.
WIDE_FLOPS = 2 * 6 * 16 + 16 + 2 * 16 * 1 + 1  # 241
LOGIT_FLOPS = 2 * 6 * 1 + 1  # 13
OUTSIDE_FLOPS = 2 * 6 * 8 + 8 + 2 * 8 * 1 + 1  # 121


def test_cost_columns_equal_hand_counts_on_a_known_stack(binary_project, tmp_path):
    from stacking import Experiment

    # No full models: serving runs the three fold models of "wide" and of "logit".
    assert not list((binary_project.root / "models/wide").glob("full*"))
    served = {"wide": 3 * WIDE, "logit": 3 * LOGIT, "outside": OUTSIDE}
    flops = {"wide": 3 * WIDE_FLOPS, "logit": 3 * LOGIT_FLOPS, "outside": OUTSIDE_FLOPS}
    candidates = [
        "mean",
        CandidateConfig(
            name="wide_and_outside", estimator="weighted", params={"weights": [1.0, 0.0, 2.0]}
        ).model_dump(),
    ]
    cfg = binary_project.config(
        tmp_path, plots=True, **{"meta.candidates": candidates, "meta.cost": True}
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    board = result.leaderboard.set_index("model")

    expected = {
        "wide": ["wide"],
        "logit": ["logit"],
        "outside": ["outside"],
        "base_mean": ["wide", "logit", "outside"],
        "mean": ["wide", "logit", "outside"],
        "wide_and_outside": ["wide", "outside"],
    }
    for model, used in expected.items():
        assert board.loc[model, "models_used"] == ",".join(used), model
        assert board.loc[model, "n_models_used"] == len(used), model
        assert board.loc[model, "n_params"] == sum(served[m] for m in used), model
        assert board.loc[model, "flops_per_row"] == sum(flops[m] for m in used), model
    assert board.loc["wide_and_outside", "n_params"] == pytest.approx(3 * 129 + 65)
    assert board.loc["wide_and_outside", "flops_per_row"] == pytest.approx(3 * 241 + 121)
    assert (tmp_path / "out" / "plots" / "cost.png").is_file()  # score against cost
    # Time: measured per base model (each of its served files), summed over those used.
    seconds = board["seconds_per_1k_rows"]
    assert (seconds[list(served)] > 0).all()
    for model, used in expected.items():
        assert seconds[model] == pytest.approx(sum(seconds[m] for m in used)), model


def test_max_models_selects_within_the_budget_or_refuses(binary_project, tmp_path):
    import mlflow

    from stacking import Experiment, load_config
    from stacking.errors import ConfigError

    def weighted(name, weights):
        return CandidateConfig(name=name, estimator="weighted", params={"weights": weights})

    two = weighted("wide_outside", [1.0, 0.0, 1.0]).model_dump()
    one = weighted("outside_only", [0.0, 0.0, 1.0]).model_dump()
    changes = {"meta.candidates": [two, one], "meta.max_models": 1, "meta.cost": True}
    cfg = binary_project.config(tmp_path / "a", **changes)
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "a/out", progress=False).run()
    board = result.leaderboard.set_index("model")
    # Without the budget the two-model candidate would win; with it, the one-model one does.
    assert board.loc["wide_outside", "cv_log_loss"] < board.loc["outside_only", "cv_log_loss"]
    assert result.ensemble == "outside_only"
    assert board.loc["outside_only", "selected"]
    assert board.loc["wide_outside", "n_models_used"] == 2

    # The MLflow parent run carries the selected ensemble's cost.
    uri = load_config(cfg).tracking.uri
    parent = mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).data.metrics
    for column in ("n_models_used", "n_params", "seconds_per_1k_rows"):
        assert parent[column] == pytest.approx(board.loc[result.ensemble, column]), column

    cfg = binary_project.config(tmp_path / "b", **{**changes, "meta.candidates": ["mean", two]})
    with pytest.raises(
        ConfigError, match=r"meta.max_models: 1, but .* \(mean: 3, wide_outside: 2\)"
    ):
        Experiment.from_yaml(cfg, output_dir=tmp_path / "b/out", progress=False).run()
    assert not (tmp_path / "b/out").exists()


def test_pareto_front_keeps_entries_no_cheaper_entry_matches():
    from stacking.plots import pareto_front

    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 1.0])
    loss = np.array([0.50, 0.40, 0.45, 0.40, 0.30, 0.50])  # lower is better
    front = pareto_front(cost, loss, greater_is_better=False)
    # 2: beaten by 1 (same cost, lower loss); 3: by 1 (cheaper, same loss); 0 and 5 tie
    assert front.tolist() == [True, True, False, False, True, True]
    accuracy = 1 - loss  # the same ranking, higher is better
    assert pareto_front(cost, accuracy, greater_is_better=True).tolist() == front.tolist()
    assert pareto_front(cost, loss, greater_is_better=True).tolist() == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]
