"""Config: defaults, unknown keys and wrong types named by dotted key, --set, paths."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stacking.config import FeaturesConfig, load_config, parse_config
from stacking.errors import ConfigError, DataFileNotFoundError

MINIMAL = {
    "data": {
        "train": "train.csv",
        "target": "label",
        "views": {"pixels": {"columns": "px_*"}, "x": {"columns": "f_*"}},
    },
    "base_models": {"cnn": {"path": "models/cnn", "input": "pixels"}},
}


def _raw(**sections):
    raw = copy.deepcopy(MINIMAL)
    raw.update(copy.deepcopy(sections))
    return raw


def _parse(raw, overrides=()):
    return parse_config(raw, root=Path("/project"), source="exp.yaml", overrides=list(overrides))


def test_config_minimal_gets_defaults():
    cfg = _parse(_raw())
    assert cfg.name == "experiment"
    assert (cfg.folds.kind, cfg.folds.n_splits, cfg.folds.seed, cfg.folds.column) == (
        "auto",
        5,
        0,
        None,
    )
    assert cfg.data.task == "auto"
    assert cfg.data.id is None
    assert cfg.meta.features == FeaturesConfig(kind="proba", drop_redundant=True)
    assert cfg.meta.candidates == ["default"]
    assert cfg.meta.bootstrap == 1000
    assert cfg.metrics == []
    assert cfg.tracking.enabled is True and cfg.tracking.uri is None
    assert cfg.cache.enabled is True and cfg.cache.dir == Path(".stacking_cache")
    assert cfg.executor.kind == "local"
    assert cfg.base_models["cnn"].trained_on is None
    assert cfg.base_models["cnn"].test_with == "mean"


@pytest.mark.parametrize(
    ("edit", "dotted"),
    [
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r["data"].update(tragt="y"), "data.tragt"),
        (lambda r: r["base_models"]["cnn"].update(pth="m"), "base_models.cnn.pth"),
        # a model name that starts like a pydantic union tag ("str") is kept
        (
            lambda r: r["base_models"].update(strong={"path": "m", "input": "x", "pth": 1}),
            "base_models.strong.pth",
        ),
        (
            lambda r: r["data"].update(views={"pixels": {"columns": "px_*", "shpe": [8]}}),
            "data.views.pixels.shpe",
        ),
        (
            lambda r: r["base_models"]["cnn"].update(input={"columns": "px_*", "shpe": [8]}),
            "base_models.cnn.input.shpe",
        ),
        (
            lambda r: r["base_models"]["cnn"].update(input=["a", {"columns": "b", "shpe": 1}]),
            "base_models.cnn.input.1.shpe",
        ),
        (lambda r: r.update(meta={"features": {"kindd": "logit"}}), "meta.features.kindd"),
        (
            lambda r: r.update(meta={"candidates": ["lr", {"estimator": "lr", "parms": {}}]}),
            "meta.candidates.1.parms",
        ),
        (
            lambda r: r.update(meta={"levels": [{"candidates": [{"estimator": "lr", "x": 1}]}]}),
            "meta.levels.0.candidates.0.x",
        ),
        (lambda r: r.update(tracking={"url": "http://x"}), "tracking.url"),
    ],
)
def test_config_unknown_key_names_dotted_key(edit, dotted):
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError, match=rf"^exp\.yaml: unknown key '{dotted}'\. Remove it"):
        _parse(raw)


@pytest.mark.parametrize(
    ("sections", "dotted", "received"),
    [
        ({"folds": {"n_splits": "three"}}, "folds.n_splits", "'three'"),
        ({"folds": {"n_splits": 1}}, "folds.n_splits", "1"),
        ({"folds": {"kind": "random"}}, "folds.kind", "'random'"),
        ({"meta": {"bootstrap": -5}}, "meta.bootstrap", "-5"),
        ({"meta": {"features": "logits"}}, "meta.features", "'logits'"),
        ({"tracking": {"enabled": "maybe"}}, "tracking.enabled", "'maybe'"),
        ({"metrics": "log_loss"}, "metrics", "'log_loss'"),
        ({"executor": {"batch_size": 0}}, "executor.batch_size", "0"),
        ({"data": {"train": "t.csv", "target": 3}}, "data.target", "3"),
        (
            {
                "data": {
                    "train": "t.csv",
                    "target": "y",
                    "views": {"v": {"columns": "a", "shape": [8, 0]}},
                }
            },
            "data.views.v.shape",
            r"\[8, 0\]",
        ),
    ],
)
def test_config_wrong_type_echoes_received_value(sections, dotted, received):
    with pytest.raises(ConfigError, match=rf"invalid value for '{dotted}'.*Received: {received}"):
        _parse(_raw(**sections))


def test_config_wrong_value_in_literal_union_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"'proba', 'logit' or 'rank'"):
        _parse(_raw(meta={"features": "logits"}))


def test_config_counts_further_problems():
    raw = _raw(folds={"n_splits": 1})
    raw["data"]["task"] = "bin"
    with pytest.raises(ConfigError, match=r"\(and 1 more problems\)$"):
        _parse(raw)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r["data"].pop("target"), r"missing required key 'data\.target'"),
        (lambda r: r.pop("base_models"), r"missing required key 'base_models'"),
        (
            lambda r: r["base_models"]["cnn"].update(input={"shape": [4]}),
            r"missing required key 'base_models\.cnn\.input\.columns'",
        ),
    ],
)
def test_config_missing_required_key(edit, match):
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError, match=match):
        _parse(raw)


def test_config_set_overrides_apply_before_validation():
    cfg = _parse(
        _raw(), overrides=["folds.n_splits=3", "meta.features=logit", "tracking.enabled=false"]
    )
    assert cfg.folds.n_splits == 3
    assert cfg.meta.features == FeaturesConfig(kind="logit")
    assert cfg.tracking.enabled is False


def test_config_set_override_creates_missing_section():
    cfg = _parse(_raw(), overrides=["executor.batch_size=128"])
    assert cfg.executor.batch_size == 128


def test_config_set_override_is_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"invalid value for 'folds\.n_splits'.*Received: 1"):
        _parse(_raw(), overrides=["folds.n_splits=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'folds\.n_split'"):
        _parse(_raw(), overrides=["folds.n_split=3"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("folds.n_splits", r"--set expects dotted\.key=value\. Received: 'folds\.n_splits'"),
        ("=3", r"--set expects dotted\.key=value\. Received: '=3'"),
        ("data.train.x=1", r"--set data\.train\.x: 'train' is not a section"),
    ],
)
def test_config_bad_override_syntax(override, match):
    with pytest.raises(ConfigError, match=match):
        _parse(_raw(), overrides=[override])


@pytest.mark.parametrize("name", ["a__b", "cnn__", "1cnn", "_cnn", "c n n", "cnn/x"])
def test_config_bad_base_model_name(name):
    raw = _raw()
    raw["base_models"][name] = {"path": "m", "input": "x"}
    with pytest.raises(ConfigError, match=rf"base model name '{name}' must start with a letter"):
        _parse(raw)


@pytest.mark.parametrize("name", ["cnn", "resnet-50", "v1.2", "my_model_2"])
def test_config_good_base_model_name(name):
    raw = _raw(base_models={name: {"path": "m", "input": "x"}})
    assert list(_parse(raw).base_models) == [name]


def test_config_needs_a_base_model():
    with pytest.raises(ConfigError, match="at least one base model is needed"):
        _parse(_raw(base_models={}))


@pytest.mark.parametrize("kind", ["proba", "logit", "rank"])
def test_config_features_string_expands_to_features_config(kind):
    cfg = _parse(_raw(meta={"features": kind}))
    assert isinstance(cfg.meta.features, FeaturesConfig)
    assert cfg.meta.features.kind == kind
    assert cfg.meta.features.drop_redundant is True
    assert cfg.meta.features.passthrough == [] and cfg.meta.features.fwls == []


@pytest.mark.parametrize(
    ("folds", "ok"),
    [
        ({"kind": "group"}, False),
        ({"kind": "group", "group": "patient"}, True),
        ({"kind": "group", "column": "fold"}, True),
        ({"kind": "kfold"}, True),
    ],
)
def test_config_group_folds_need_group_column(folds, ok):
    if ok:
        assert _parse(_raw(folds=folds)).folds.kind == folds["kind"]
    else:
        with pytest.raises(ConfigError, match=r"'folds'.*kind: group needs `group: COLUMN`"):
            _parse(_raw(folds=folds))


def test_config_top_level_must_be_mapping():
    with pytest.raises(
        ConfigError, match=r"expected a mapping at the top level. Received: \[1, 2\]"
    ):
        _parse([1, 2])


def _write(path: Path, raw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_load_config_resolves_relative_paths_against_yaml_folder(tmp_path, monkeypatch):
    raw = _raw()
    raw["data"]["test"] = "../data/test.parquet"
    raw["base_models"]["ext"] = {"path": str(tmp_path / "abs.keras"), "input": "x"}
    path = _write(tmp_path / "configs" / "digits.yaml", raw)
    monkeypatch.chdir(tmp_path / "configs")  # any working directory gives the same paths
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = load_config(path.relative_to(tmp_path / "configs"))
    monkeypatch.chdir(elsewhere)
    again = load_config(path)
    root = (tmp_path / "configs").resolve()
    for c in (cfg, again):
        assert c.data.train == root / "train.csv"
        assert c.data.test == (tmp_path / "data" / "test.parquet").resolve()
        assert c.base_models["cnn"].path == root / "models" / "cnn"
        assert c.base_models["ext"].path == tmp_path / "abs.keras"


def test_load_config_name_defaults_to_file_stem(tmp_path):
    assert load_config(_write(tmp_path / "digits.yaml", _raw())).name == "digits"
    assert load_config(_write(tmp_path / "b.yaml", _raw(name="mine"))).name == "mine"


def test_load_config_applies_overrides(tmp_path):
    cfg = load_config(_write(tmp_path / "c.yaml", _raw()), overrides=["meta.features=rank"])
    assert cfg.meta.features.kind == "rank"


def test_load_config_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DataFileNotFoundError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(missing)


def test_load_config_missing_file_is_also_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("data: [1, 2\n", ConfigError, r"c\.yaml: not valid YAML"),
        ("data:\n  train: a\n target: b\n", ConfigError, r"c\.yaml: not valid YAML"),
        ("- 1\n- 2\n", ConfigError, r"c\.yaml: expected a mapping at the top level"),
        ("", ConfigError, r"c\.yaml: missing required key"),
    ],
)
def test_load_config_invalid_yaml(tmp_path, text, error, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(error, match=match):
        load_config(path)


def test_load_config_error_names_the_file(tmp_path):
    path = _write(tmp_path / "exp1.yaml", _raw(folds={"n_splits": 0}))
    with pytest.raises(ConfigError, match=rf"^{path}: invalid value for 'folds\.n_splits'"):
        load_config(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda r: r["base_models"]["cnn"].update(input="pixel"),
            r"base_models.cnn.input: no view 'pixel' in data.views \(defined: \['pixels', 'x'\]\)",
        ),
        (
            lambda r: r.update(
                meta={"candidates": ["mean", {"estimator": "nnls", "name": "mean"}]}
            ),
            "meta.candidates: the name 'mean' is used twice",
        ),
        (
            lambda r: r.update(meta={"candidates": ["cnn"]}),
            "meta.candidates: the name 'cnn' is used twice",
        ),
        (
            lambda r: r.update(meta={"levels": [{"candidates": []}]}),
            r"meta.levels\[0\].candidates is empty",
        ),
    ],
)
def test_config_cross_references_are_checked_when_parsed(edit, match):
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError, match=match) as info:
        _parse(raw)
    assert str(info.value).startswith("exp.yaml: ") and "\n" not in str(info.value)
