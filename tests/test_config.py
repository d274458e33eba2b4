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
            r"invalid value for 'base_models\.cnn\.input': a view reads exactly one of "
            r"`columns`, `image`, `text` or `array`\. Received: none$",
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


@pytest.mark.parametrize("empty", [{}, None])
def test_config_needs_a_base_model(empty):
    # None: `base_models:` with only the commented examples `stacking init` writes.
    with pytest.raises(ConfigError, match="no base models: add at least one under base_models:"):
        _parse(_raw(base_models=empty))


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
        ("data: [1, 2\n", ConfigError, r"c\.yaml:2:1: not valid YAML: .*at line 1: 'data: \[1, 2'"),
        (
            "data:\n  train: a\n target: b\n",
            ConfigError,
            r"c\.yaml:3:2: not valid YAML: expected <block end>.* \(line 3: 'target: b'\)",
        ),
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


# -- names that become folders and keys; encodings; --set values -------------------------


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "a..b", "x" * 101, "", "a b"])
def test_config_unsafe_experiment_name_is_refused(name):
    with pytest.raises(ConfigError, match=r"invalid value for 'name': .*becomes a folder name"):
        _parse(_raw(name=name))


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("digits", "digits"),
        ("my exp (v2)", "my-exp-v2-"),
        (".hidden", "hidden"),
        ("..", "experiment"),
    ],
)
def test_load_config_default_name_is_sanitised_file_stem(tmp_path, stem, name):
    path = _write(tmp_path / "cfg" / f"{stem}.yaml", _raw())
    assert load_config(path).name == name


@pytest.mark.parametrize("name", ["a__b", "../x", "has space"])
def test_config_unsafe_candidate_name_is_refused(name):
    raw = _raw(meta={"candidates": [{"name": name, "estimator": "ridge"}]})
    with pytest.raises(ConfigError, match=r"'meta\.candidates\.0\.name'.*candidate name"):
        _parse(raw)


def test_load_config_not_utf8_names_the_file_and_byte(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_config(path)


@pytest.mark.parametrize("value", ["[unclosed", "{a: 1", "'open"])
def test_config_set_value_that_is_not_yaml(value):
    with pytest.raises(ConfigError, match=r"--set meta\.candidates: the value is not valid YAML"):
        _parse(_raw(), overrides=[f"meta.candidates={value}"])


def test_config_top_level_scalar_is_a_config_error(tmp_path):
    path = tmp_path / "n.yaml"
    path.write_text("42\n")
    with pytest.raises(ConfigError, match=r"n\.yaml: expected a mapping .* Received: 42"):
        load_config(path)


# -- untrusted configs: import paths limited to stacking. and sklearn. ---------------------

UNTRUSTED = [
    ({"meta": {"candidates": ["subprocess.Popen"]}}, "meta.candidates.0", "subprocess.Popen"),
    (
        {
            "meta": {
                "candidates": ["ridge"],
                "levels": [{"candidates": [{"estimator": "os.system"}]}],
            }
        },
        "meta.levels.0.candidates.0",
        "os.system",
    ),
    (
        {"base_models": {"bb": {"path": "m", "input": "x", "layer": "d", "head": "evil.Head"}}},
        "base_models.bb.head",
        "evil.Head",
    ),
    (
        {"base_models": {"bb": {"path": "m", "input": "x", "head": {"estimator": "x.sklearn.Y"}}}},
        "base_models.bb.head",
        "x.sklearn.Y",
    ),
]


@pytest.mark.parametrize(("sections", "key", "path"), UNTRUSTED)
def test_untrusted_config_refuses_imports_outside_stacking_and_sklearn(sections, key, path):
    raw = _raw(**sections)
    pattern = rf"run r1: {key} names '{path}', outside stacking\. and sklearn\..*--trust-imports"
    with pytest.raises(ConfigError, match=pattern):
        parse_config(copy.deepcopy(raw), root=Path("/p"), source="run r1", trusted_imports=False)
    assert parse_config(raw, root=Path("/p"), trusted_imports=True)  # a config you wrote


def test_untrusted_config_allows_short_names_and_our_prefixes():
    raw = _raw(
        meta={
            "candidates": [
                "logistic",
                "default",
                "sklearn.linear_model.Ridge",
                {"estimator": "stacking.meta.NNLSRegressor", "name": "n"},
            ]
        }
    )
    cfg = parse_config(raw, root=Path("/p"), trusted_imports=False)
    assert len(cfg.meta.candidates) == 4


def test_import_paths_lists_custom_objects():
    """custom_objects imports modules, so the untrusted-config check must see it (a renamed
    field fails here instead of leaving an import unchecked)."""
    from stacking.config import import_paths

    raw = _raw()
    raw["base_models"]["cnn"]["custom_objects"] = ["evil_pkg.layers"]
    cfg = _parse(raw)
    assert ("base_models.cnn.custom_objects", "evil_pkg.layers") in import_paths(cfg)


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


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"tracking": {"kind": "none", "uri": "sqlite:///x.db"}},
            r"unknown key 'tracking.uri' for tracking.kind 'none'; it is a key of kind 'mlflow'",
        ),
        (
            {"cache": {"kind": "memory", "dir": "c"}},
            r"unknown key 'cache.dir' for cache.kind 'memory'; it is a key of kind 'local'",
        ),
        (
            {"executor": {"num_gpus": 1}},
            r"unknown key 'executor.num_gpus' for executor.kind 'local'; it is a key of kind 'ray'",
        ),
        ({"executor": {"kind": "spark"}}, r"executor.kind 'spark' is not an executor; use one of"),
        ({"tracking": {"kind": ["mlflow"]}}, r"tracking.kind \['mlflow'\] is not a tracker"),
    ],
)
def test_config_plugin_section_keys_follow_the_kind(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_raw(**section), root=Path("/tmp"))


def test_config_plugin_sections_round_trip_with_their_kinds_keys():
    sections = {
        "tracking": {"kind": "mlflow", "uri": "sqlite:///x.db", "enabled": False},
        "cache": {"kind": "memory"},
        "executor": {"kind": "ray", "num_gpus": 1},
    }
    cfg = parse_config(_raw(**sections), root=Path("/tmp"))
    dumped = cfg.to_dict()
    assert dumped["tracking"]["uri"] == "sqlite:///x.db" and dumped["executor"]["num_gpus"] == 1
    again = parse_config(dumped, root=Path("/tmp"))
    assert again.to_dict() == dumped
    assert [type(again.executor).__name__, type(again.cache).__name__] == [
        "RayExecutorConfig",
        "MemoryCacheConfig",
    ]
