"""The experiment configuration: YAML validated once, at the edge, by pydantic models.

Inside tf-stacking code trusts a :class:`Config`. Unknown keys and wrong types are
errors that name the key path, echo what was received and list what is allowed::

    >>> cfg = load_config("configs/digits.yaml", overrides=["meta.features=logit"])
    >>> cfg.folds.n_splits
    5

Relative paths in the file are resolved against the folder of the YAML file, so a config
runs the same from any working directory.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stacking.errors import ConfigError, DataFileNotFoundError, did_you_mean, first_line

Task = Literal["auto", "binary", "multiclass", "multilabel", "regression"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
# An experiment or candidate name becomes a folder name (runs/<name>-<time>), a cache and
# MLflow key: no separators, no leading dot, nothing a shell or a URL would reinterpret.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Import paths a config read back from a tracking server may name (see parse_config).
TRUSTED_PREFIXES = ("stacking.", "sklearn.")


def _check_name(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{what} must be 1-100 letters, digits, '_', '-' or '.', start with a letter or "
            f"digit and hold no '..' (it becomes a folder name and an MLflow key)"
        )
    return value


def safe_name(text: str) -> str:
    """``text`` made into a valid experiment name (for names taken from file names)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).replace("..", ".").lstrip("._-")[:100]
    return cleaned or "experiment"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ArrayConfig(_Strict):
    train: str = Field(description="a .npy file, or file.npz:key, row-aligned with data.train")
    test: str | None = Field(None, description="the same for data.test")
    column: str | None = Field(None, description="serving: the column holding each row's array")


class ViewConfig(_Strict):
    """What a base model reads: exactly one of ``columns``, ``image``, ``text``, ``array``."""

    columns: list[str] | str | None = Field(
        None, description="column names, or one glob such as 'px_*'"
    )
    image: str | None = Field(None, description="a column of image paths")
    size: list[int] | None = Field(None, description="image: [height, width]")
    channels: Literal[1, 3] = Field(3, description="image: 1 (grayscale) or 3 (RGB)")
    text: str | None = Field(
        None, description="a column of strings, fed as tf.string, shape (n, 1)"
    )
    array: ArrayConfig | None = Field(None, description="row-aligned arrays from .npy/.npz files")
    shape: list[int] | None = Field(None, description="per-row shape, e.g. [8, 8, 1]")
    dtype: Literal["float16", "float32", "float64", "int32", "int64"] = Field(
        "float32", description="columns: the dtype the values are read as"
    )

    @field_validator("shape", "size")
    @classmethod
    def _positive(cls, v: list[int] | None, info: Any) -> list[int] | None:
        if v is not None and (not v or any(d <= 0 for d in v)):
            raise ValueError(f"{info.field_name} must be positive integers")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ViewConfig:
        kinds = [k for k in ("columns", "image", "text", "array") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a view reads exactly one of `columns`, `image`, `text` or `array`. "
                f"Received: {kinds or 'none'}"
            )
        if self.image is not None and (self.size is None or len(self.size) != 2):
            raise ValueError(
                f"an image view needs `size: [height, width]`. Received: size={self.size}"
            )
        if self.image is None and self.size is not None:
            raise ValueError("`size` applies to image views only; remove it")
        if self.shape is not None and self.columns is None:
            raise ValueError("`shape` applies to column views only; remove it")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("columns", "image", "text", "array") if getattr(self, k))


class DataConfig(_Strict):
    """The tables: training rows, optional rows to predict, and the views models read."""

    train: Path = Field(description="CSV or Parquet training table")
    test: Path | None = Field(None, description="CSV or Parquet rows to predict")
    id: str | None = Field(None, description="id column; default: the row number (row_id)")
    target: str | list[str] = Field(
        description="target column, or a list of 0/1 columns (multilabel)"
    )
    task: Task = Field("auto", description="auto: inferred from the target's values")
    classes: list[str | int | float | bool] | None = Field(
        None,
        description="classification: every class of the target in the order models output "
        "them (column j is classes[j]; binary: the second is the positive class); "
        "default: sorted",
    )
    weight: str | None = Field(
        None, description="sample-weight column, used in meta fitting and in every metric"
    )
    views: dict[str, ViewConfig] = Field(
        default_factory=dict, description="named views that base models read (see below)"
    )


class FoldsConfig(_Strict):
    """The fold plan: which rows each fold model never saw."""

    kind: Literal["auto", "kfold", "stratified", "group"] = Field(
        "auto", description="auto: stratified for classes, kfold for regression"
    )
    n_splits: int = Field(5, ge=2, description="number of folds K")
    seed: int = Field(0, description="seed of the shuffled splitters")
    shuffle: bool = Field(True, description="shuffle rows before splitting")
    column: str | None = Field(None, description="take each row's fold from this column")
    file: Path | None = Field(
        None, description="take each row's fold from a CSV of (id, fold), e.g. `stacking folds`"
    )
    group: str | None = Field(None, description="group column, for kind: group")
    holdout: float | None = Field(
        None,
        description="reserve this fraction of the rows (0 < f < 0.5; stratified, whole "
        "groups) that no fold model trains on, fold -1 in the plan; meta.guard scores on them",
    )

    @model_validator(mode="after")
    def _group_needs_column(self) -> FoldsConfig:
        if self.kind == "group" and self.group is None and self.column is None:
            raise ValueError("kind: group needs `group: COLUMN` naming the group column")
        if self.column is not None and self.file is not None:
            raise ValueError("`column` and `file` both give the folds; keep one")
        if self.holdout is not None and not 0 < self.holdout < 0.5:
            raise ValueError(
                f"holdout is the fraction of rows reserved from every fold model, above 0 and "
                f"below 0.5. Received: holdout={self.holdout}; try 0.1"
            )
        if self.holdout is not None and (self.column or self.file) is not None:
            raise ValueError(
                "holdout reserves rows when the plan is split here; a plan from `column` or "
                "`file` already marks its reserved rows with fold -1, so drop holdout"
            )
        return self


class CandidateConfig(_Strict):
    """A meta-model written as a mapping (a candidate may also be a short name or an import
    path given as a plain string)."""

    name: str | None = Field(None, description="leaderboard name; default: the short name")
    estimator: str = Field(
        description="a short name (see meta-learners.md) or an import path of an estimator class"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the estimator"
    )

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str | None) -> str | None:
        if v is not None and (not _NAME.match(v) or "__" in v):
            raise ValueError(
                "a candidate name must start with a letter, use letters, digits, '_', '-', "
                "'.', and not contain '__' (it becomes a column prefix and an MLflow run name)"
            )
        return v


class PredictionFilesConfig(_Strict):
    """A base model given by its predictions instead of a model: an out-of-fold file
    (with each row's ``fold``) and a test file, written by a model trained anywhere."""

    model_config = ConfigDict(frozen=True)  # part of a frozen BaseModelSpec

    oof: Path = Field(description="CSV or Parquet: id, fold, one column per output")
    test: Path | None = Field(None, description="CSV or Parquet: id, one column per output")


# The one description of a base model's settings: read from `base_models.NAME`, carried
# unchanged in every inference job (stacking.executors.Job) and saved in stack.json by
# model_dump (read back by model_validate). What an experiment derives from it (the files
# found, the views resolved, fitted heads) lives beside it in
# stacking.base.ResolvedBaseModel. Frozen: a change is a new spec (model_copy), so the one
# shared by the jobs and the saved stack cannot drift. Its docstring is user documentation
# (docs/configuration.md is generated from it).
class BaseModelSpec(_Strict):
    """One base model: a frozen model (``path``), or the predictions of a model trained
    anywhere (``predictions``); what it reads and how it was trained."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = Field(
        None, description="a fold-model directory, or one model file or SavedModel"
    )
    predictions: PredictionFilesConfig | None = Field(
        None, description="instead of `path`: an OOF file and a test file of predictions"
    )
    input: str | ViewConfig | list[str | ViewConfig] | dict[str, str | ViewConfig] | None = Field(
        None,
        description="a view name from data.views, an inline view, a list (one per model input, "
        "in the model's declared order) or a mapping {model_input_name: view} (by name)",
    )
    custom_objects: list[str] = Field(
        default_factory=list,
        description="modules defining the model's custom Keras classes, imported before loading",
    )
    trained_on: Literal["folds", "external"] | None = Field(
        None, description="'folds' for a fold-model directory; 'external' for one model"
    )
    output: str | int | None = Field(None, description="which output of a multi-output model")
    layer: str | None = Field(None, description="backbone: the layer whose output is embedded")
    head: str | CandidateConfig | None = Field(
        None, description="backbone: the estimator cross-fitted on the embeddings"
    )
    outputs_are: Literal["auto", "proba", "logits"] = Field(
        "auto", description="auto: values outside [0, 1] are read as logits"
    )
    test_with: Literal["mean", "full"] = Field(
        "mean", description="test rows: the mean of the fold models, or the full model"
    )

    @field_validator("input", mode="before")
    @classmethod
    def _inline_view_or_mapping(cls, v: Any) -> Any:
        # A dict with a view key is an inline view (its typos are then reported as unknown
        # view keys); any other dict maps the model's input names to views. Pydantic alone
        # would read {columns: "f_*"} as the mapping of an input named "columns".
        view_keys = {"columns", "image", "text", "array", *ViewConfig.model_fields}
        if isinstance(v, dict) and set(v) & view_keys:
            return ViewConfig.model_validate(v)
        return v

    @field_validator("custom_objects", mode="before")
    @classmethod
    def _module_list(cls, v: Any) -> Any:
        modules = [v] if isinstance(v, str) else v
        dotted = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
        if isinstance(modules, list):
            bad = [m for m in modules if not isinstance(m, str) or not dotted.match(m)]
            if bad:
                raise ValueError(
                    f"custom_objects takes importable module paths such as my_pkg.layers. "
                    f"Received: {bad}"
                )
        return modules

    @property
    def input_names(self) -> list[str] | None:
        """The model inputs the views feed, by name (``input: {name: view}``); ``None``
        when the views follow the model's declared input order."""
        return list(self.input) if isinstance(self.input, dict) else None

    @model_validator(mode="after")
    def _model_or_predictions(self, info: ValidationInfo) -> BaseModelSpec:
        """A base model is a model (``path`` and ``input``) or prediction files, not both."""
        if _read_back(info):
            return self
        if self.predictions is None:
            missing = [k for k in ("path", "input") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"missing {' and '.join(missing)}: a base model needs `path` and `input` "
                    "(a model and what it reads), or `predictions: {oof: FILE, test: FILE}`"
                )
            return self
        defaults = BaseModelSpec.model_fields
        extra = [
            k
            for k in ("path", "input", *_MODEL_ONLY_KEYS)
            if getattr(self, k) != defaults[k].get_default(call_default_factory=True)
        ]
        if extra:
            raise ValueError(
                f"{extra} do not apply to prediction files (`predictions:` set): the files "
                "hold the predictions, there is no model to load or feed; remove them"
            )
        return self

    @model_validator(mode="after")
    def _backbone_keys(self, info: ValidationInfo) -> BaseModelSpec:
        if _read_back(info):
            return self
        if self.layer is not None and self.head is None:
            raise ValueError(
                "`layer:` makes the model a backbone, which needs `head:` (the estimator "
                "cross-fitted on its embeddings), e.g. head: logistic"
            )
        if self.head is not None:
            ignored = [
                key
                for key, default in (("outputs_are", "auto"), ("test_with", "mean"))
                if getattr(self, key) != default
            ]
            ignored += ["output"] if self.output is not None and self.layer is not None else []
            if ignored:
                raise ValueError(
                    f"{ignored} do not apply to a backbone (`head:` set): its layer's output "
                    "is embedded and the head's fold models predict; remove them"
                )
        return self


#: Validation context of a spec read back from a saved stack (``stack.json``): the keys a
#: config must hold are not required of it, as a stack saved in format 3 recorded only
#: those serving reads (no path, no head, no prediction files) and may be saved again.
READ_BACK = {"stacking.read_back": True}


def _read_back(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("stacking.read_back"))


# Keys that configure a model and so make no sense for prediction files.
_MODEL_ONLY_KEYS = (
    "custom_objects",
    "trained_on",
    "output",
    "layer",
    "head",
    "outputs_are",
    "test_with",
)


class FeaturesConfig(_Strict):
    """The level-1 features learned meta-models read (``meta.features: logit`` is short for
    ``{kind: logit}``)."""

    kind: Literal["proba", "logit", "rank"] = Field(
        "proba", description="each base model's probabilities, their logits, or their ranks"
    )
    drop_redundant: bool = Field(
        True, description="binary tasks keep only the positive-class column"
    )
    passthrough: list[str] = Field(
        default_factory=list,
        description="original columns (names or globs) appended to the level-1 features",
    )
    fwls: list[str] = Field(
        default_factory=list,
        description="meta-feature columns: adds every level-1 column times each (FWLS)",
    )


def candidate_name(spec: str | CandidateConfig) -> str:
    """The leaderboard name of a candidate entry: its ``name``, short name or class."""
    if isinstance(spec, str):
        return spec if "." not in spec else spec.rpartition(".")[2].lower()
    if spec.name:
        return spec.name
    key = spec.estimator
    return key if "." not in key else key.rpartition(".")[2].lower()


class LevelConfig(_Strict):
    """A further level, reading the previous level's out-of-fold predictions."""

    candidates: list[str | CandidateConfig] = Field(description="meta-models of this level")


def _default_candidates() -> list[str | CandidateConfig]:
    return ["default"]


class MetaConfig(_Strict):
    """The meta-models compared on the experiment's folds; the best is the ensemble."""

    features: FeaturesConfig | Literal["proba", "logit", "rank"] = Field(
        default_factory=FeaturesConfig, description="a kind, or the mapping below"
    )
    candidates: list[str | CandidateConfig] = Field(
        default_factory=_default_candidates,
        description="short names, import paths or mappings; the best is the ensemble",
    )
    levels: list[LevelConfig] = Field(default_factory=list, description="further levels")
    bootstrap: int = Field(
        1000, ge=0, description="paired bootstrap resamples; 0 turns the intervals off"
    )
    interval: Literal["auto", "bootstrap", "analytic"] = Field(
        "auto",
        description="the leaderboard's interval: auto = the bootstrap up to "
        "bootstrap_max_rows rows, an O(n) analytic one (t, DeLong) above",
    )
    bootstrap_max_rows: int = Field(20_000, ge=0, description="see interval")
    seed: int = Field(0, description="seed of the bootstrap and of seedable meta-models")
    nested: bool = Field(
        False,
        description="also score the selection itself by an outer cross-validation "
        "(cv_<metric>_selected_nested); costs about K times the meta-level fits",
    )
    cost: bool = Field(
        False,
        description="add each entry's base models used (non-zero weights) and their "
        "parameter count to the leaderboard; loads every served model file once",
    )
    max_models: int | None = Field(
        None,
        ge=1,
        description="select only a last-level candidate that uses at most this many base "
        "models (non-zero weights); none: no budget",
    )
    repeats: int = Field(
        1,
        ge=1,
        description="cross-fit the meta levels on this many splits of the rows (the fold "
        "plan, then re-splits seeded from folds.seed); >1 adds each entry's mean and spread",
    )
    guard: bool = Field(
        False,
        description="select a meta-model only if it beats the best base model on the rows "
        "the fold plan reserves (folds.holdout); otherwise fall back to that base model",
    )

    @field_validator("features", mode="after")
    @classmethod
    def _expand(cls, v: Any) -> FeaturesConfig:
        return FeaturesConfig(kind=v) if isinstance(v, str) else v


class KindConfig(_Strict):
    """A plug-in family's config section: ``kind`` picks the implementation, and with it
    the section's keys.

    Each family has one base here (:class:`ExecutorConfig`, :class:`CacheConfig`,
    :class:`TrackingConfig`) holding the keys every kind shares. Each implementation
    subclasses it in its own module, with ``kind: Literal["name"]`` and its own keys, and
    registers both with its family's decorator (``@register_executor(RayExecutorConfig)``).
    Validating a family's base validates the class registered for the ``kind`` given, so
    a kind registered later (a user's module, a test) is a valid config as it is::

        >>> ExecutorConfig.build({"kind": "ray", "num_gpus": 1}).num_gpus
        1.0
    """

    family: ClassVar[str] = ""  # the section's key: executor, cache, tracking
    noun: ClassVar[str] = ""  # one implementation, in messages: "an executor"
    package: ClassVar[str] = ""  # the package whose modules register the built-in kinds
    default_kind: ClassVar[str] = ""
    kinds: ClassVar[dict[str, type[KindConfig]]] = {}  # kind -> config class, per family
    implementation: ClassVar[Any] = None  # on a kind's class: what the factory builds

    kind: str

    @classmethod
    def register(cls, config: type[KindConfig], implementation: Any) -> None:
        """Make ``config`` the section of ``{family: {kind: <its kind>}}`` and
        ``implementation`` what the family's factory builds from it. Called by the
        family's decorator (``register_executor`` …), not directly."""
        kind = config.kind_name()
        if not kind or not issubclass(config, cls) or config is cls:
            raise TypeError(
                f"{config.__name__} must subclass {cls.__name__} and set a default "
                f"`kind: Literal[...]`, e.g. kind: Literal['mine'] = 'mine'"
            )
        config.implementation = implementation
        cls.kinds[kind] = config

    @classmethod
    def kind_name(cls) -> str:
        """The kind a config class stands for: its ``kind`` default."""
        default = cls.model_fields["kind"].default
        return default if isinstance(default, str) else ""

    @classmethod
    def registered(cls) -> dict[str, type[KindConfig]]:
        """Every registered kind of the family (``kind`` -> config class).

        The family's package registers the built-in kinds when it is imported; it sits
        above this module in the data flow, so it is imported here by name, as a plug-in
        entry point would be, the first time a kind is looked up."""
        if cls.package and cls.package not in sys.modules:
            import_module(cls.package)
        return cls.kinds

    @classmethod
    def build(cls: type[K], raw: Mapping[str, Any] | None = None) -> K:
        """The section ``raw`` (a mapping, as in YAML) validated by its kind's class."""
        return cls.model_validate(dict(raw or {}))

    @model_validator(mode="wrap")
    @classmethod
    def _by_kind(cls, data: Any, handler: ModelWrapValidatorHandler[KindConfig]) -> KindConfig:
        if "kinds" not in cls.__dict__ or not isinstance(data, dict):
            return handler(data)  # a kind's own class, or not a mapping: as usual
        kind = data.get("kind", cls.default_kind)
        kinds = cls.registered()
        if not isinstance(kind, str) or kind not in kinds:
            raise ValueError(
                f"{cls.family}.kind {kind!r} is not {cls.noun}; use one of {sorted(kinds)}"
            )
        return kinds[kind].model_validate({**data, "kind": kind})


K = TypeVar("K", bound=KindConfig)


class TrackingConfig(KindConfig):
    """Where runs are recorded: ``kind`` picks a tracker of :mod:`stacking.tracking`.

    ``enabled: false`` records nothing, whatever the kind (the older spelling of
    ``kind: none``).
    """

    family = "tracking"
    noun = "a tracker"
    package = "stacking.tracking"
    default_kind = "mlflow"
    kinds = {}

    kind: str = Field("mlflow", description="mlflow records the run; none records nothing")
    enabled: bool = Field(True, description="false is the same as kind: none")
    run_name: str | None = Field(None, description="parent run name; default: the config's name")


class CacheConfig(KindConfig):
    """The prediction cache: checksummed entries keyed by content digests; ``kind`` picks
    a store of :mod:`stacking.cache`."""

    family = "cache"
    noun = "a cache store"
    package = "stacking.cache"
    default_kind = "local"
    kinds = {}

    kind: str = Field("local", description="local: a folder; memory: this process only")
    enabled: bool = Field(True, description="false computes every prediction again")


class ExecutorConfig(KindConfig):
    """Where base models predict: ``kind`` picks an executor of :mod:`stacking.executors`."""

    family = "executor"
    noun = "an executor"
    package = "stacking.executors"
    default_kind = "local"
    kinds = {}

    kind: str = Field("local", description="local, prefetch or ray")
    batch_size: int = Field(4096, ge=1, description="rows per compiled call")


class Config(_Strict):
    """One stacking experiment."""

    name: str = Field(
        "experiment",
        description="results folder and MLflow run name; default: the YAML file's stem",
    )
    data: DataConfig = Field(description="the tables and views")
    folds: FoldsConfig = Field(default_factory=FoldsConfig, description="the fold plan")
    base_models: dict[str, BaseModelSpec] = Field(
        description="the frozen models to stack, by name (at least one)"
    )
    meta: MetaConfig = Field(default_factory=MetaConfig, description="the meta-models")
    metrics: list[str] = Field(
        default_factory=list,
        description="scikit-learn scorer names; the first is primary; default: by task",
    )
    # Each plug-in section is validated by the class registered for its `kind`, and
    # written back (config.resolved.yaml) with that class's keys.
    tracking: SerializeAsAny[TrackingConfig] = Field(
        default_factory=TrackingConfig.build, description="where the run is recorded"
    )
    cache: SerializeAsAny[CacheConfig] = Field(
        default_factory=CacheConfig.build, description="the prediction cache"
    )
    executor: SerializeAsAny[ExecutorConfig] = Field(
        default_factory=ExecutorConfig.build, description="where base models predict"
    )
    plots: bool = Field(True, description="PNG plots in the results folder and the run")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v, "name")

    @field_validator("base_models", mode="before")
    @classmethod
    def _some(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None or v == {}:  # `base_models:` with only comments under it reads as None
            if (info.context or {}).get("base_models_optional"):
                return {}  # `stacking folds`: the plan comes before any model
            raise ValueError(
                "no base models: add at least one under base_models: with its `path:` and "
                "`input:` (a view of data.views)"
            )
        return v

    @field_validator("base_models")
    @classmethod
    def _names(cls, v: dict[str, BaseModelSpec]) -> dict[str, BaseModelSpec]:
        for name in v:
            if not _NAME.match(name) or "__" in name or name.endswith("_"):
                raise ValueError(
                    f"base model name {name!r} must start with a letter, use letters, digits, "
                    "'_', '-', '.', and neither contain '__' nor end in '_' (its columns are "
                    "named <model>__<output>: 'a_' and class '_x' would collide with 'a')"
                )
        return v

    @model_validator(mode="after")
    def _guard_needs_holdout(self) -> Config:
        folds = self.folds
        if self.meta.guard and folds.holdout is None and folds.column is None and not folds.file:
            raise ValueError(
                "meta.guard scores the stack on rows no fold model trained on, but the fold "
                "plan reserves none; set folds.holdout (e.g. 0.1) or drop meta.guard"
            )
        return self

    @model_validator(mode="after")
    def _references(self) -> Config:
        """Names that point elsewhere in the config: views, and candidate names."""
        for name, model in self.base_models.items():
            if model.input is None:  # prediction files read no view
                continue
            specs = model.input if isinstance(model.input, (list, dict)) else [model.input]
            refs = specs.values() if isinstance(specs, dict) else specs
            for ref in refs:
                if isinstance(ref, str) and ref not in self.data.views:
                    raise ValueError(
                        f"base_models.{name}.input: no view {ref!r} in data.views "
                        f"(defined: {sorted(self.data.views)})"
                        f"{did_you_mean(ref, self.data.views)}"
                    )
        seen = {"base_mean", *self.base_models}
        levels = [self.meta.candidates] + [lv.candidates for lv in self.meta.levels]
        for i, level in enumerate(levels):
            where = "meta.candidates" if i == 0 else f"meta.levels[{i - 1}].candidates"
            if not level:
                raise ValueError(f"{where} is empty; name at least one meta-model")
            for spec in level:
                name = candidate_name(spec)
                if name in seen:
                    raise ValueError(
                        f"{where}: the name {name!r} is used twice (or by a base model); "
                        "give candidates distinct `name:` values"
                    )
                seen.add(name)
        return self

    def model_inputs(self, name: str) -> tuple[list[ViewConfig], list[str] | None]:
        """A base model's input views, and the model input names when given by name."""
        spec = self.base_models[name].input
        if spec is None:  # prediction files: no model input
            return [], None
        names = None
        if isinstance(spec, dict):
            names, spec = list(spec), list(spec.values())
        specs = spec if isinstance(spec, list) else [spec]
        views = [self.data.views[s] if isinstance(s, str) else s for s in specs]
        return views, names

    def resolve_paths(self, root: Path) -> Config:
        """Make relative paths absolute against ``root`` (the YAML file's folder)."""

        def fix(p: Path) -> Path:
            return p if p.is_absolute() else (root / p).resolve()

        self.data.train = fix(self.data.train)
        if self.data.test is not None:
            self.data.test = fix(self.data.test)
        views: list[str | ViewConfig] = list(self.data.views.values())
        for model in self.base_models.values():
            if model.input is None:
                continue
            specs = model.input if isinstance(model.input, (list, dict)) else [model.input]
            views += [v for v in (specs.values() if isinstance(specs, dict) else specs)]
        for view in views:
            if isinstance(view, ViewConfig) and view.array is not None:
                view.array.train = _fix_array_path(view.array.train, root)
                if view.array.test is not None:
                    view.array.test = _fix_array_path(view.array.test, root)
        for name, model in self.base_models.items():  # a frozen spec: replaced, not changed
            files = model.predictions
            if files is not None:
                test = fix(files.test) if files.test is not None else None
                files = files.model_copy(update={"oof": fix(files.oof), "test": test})
            path = fix(model.path) if model.path is not None else None
            self.base_models[name] = model.model_copy(update={"path": path, "predictions": files})
        if self.folds.file is not None:
            self.folds.file = fix(self.folds.file)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def split_array_location(location: str) -> tuple[str, str]:
    """``("file.npz", "key")`` for ``file.npz:key``; ``(location, "")`` otherwise."""
    if ".npz:" in location:
        path, _, key = location.rpartition(":")
        return path, key
    return location, ""


def _fix_array_path(location: str, root: Path) -> str:
    """``file.npy`` or ``file.npz:key`` with the file made absolute against ``root``."""
    path, key = split_array_location(location)
    fixed = Path(path) if Path(path).is_absolute() else (root / path).resolve()
    return f"{fixed}:{key}" if key else str(fixed)


def _key_path(loc: tuple, raw: Any, *, keep_last: bool) -> tuple[str, ...]:
    """The user's dotted key: ``loc`` without pydantic's union tags (``str``, ``ViewConfig``).

    A tag is a ``loc`` part that is not a key (or index) of the input at that point; the
    last part of a ``missing`` error is kept although the input lacks it by definition.
    """
    parts, node = [], raw
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            parts.append(str(part))
            node = node[part]
        elif keep_last and i == len(loc) - 1:
            parts.append(str(part))
    return tuple(parts)


def _models_in(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The pydantic models an annotation may hold, and whether it is a mapping or list of
    them (whose next key is a user's name or an index, not a field)."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, KindConfig):
        return [annotation, *annotation.registered().values()], False  # every kind's keys
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    if origin in (dict, list):
        return _models_in(get_args(annotation)[-1])[0], True
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    models: list[type[BaseModel]] = []
    container = False
    for arg in get_args(annotation):
        found, nested = _models_in(arg)
        models += found
        container = container or nested
    return models, container


def _allowed_keys(parents: tuple[str, ...]) -> set[str]:
    """The keys the config models accept under the dotted ``parents``: what an unknown key
    is compared with for a "did you mean"."""
    models: list[type[BaseModel]] = [Config]
    skip = False
    for part in parents:
        if skip:  # a base model's name, a view's name, a list index
            skip = False
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        models, skip = [], False
        for info in fields:
            found, container = _models_in(info.annotation)
            models += found
            skip = skip or container
    return {name for m in models for name in m.model_fields}


def _other_kinds_key(path: tuple[str, ...], raw: Any) -> str:
    """For a plug-in section's key that only other kinds take (``tracking.uri`` with
    ``kind: none``): which kinds take it; otherwise ``""``."""
    field = Config.model_fields.get(path[0]) if len(path) == 2 else None
    family = field.annotation if field is not None else None
    if not (isinstance(family, type) and issubclass(family, KindConfig)):
        return ""
    section = raw.get(path[0]) if isinstance(raw, dict) else None
    kind = section.get("kind", family.default_kind) if isinstance(section, dict) else None
    owners = sorted(k for k, c in family.registered().items() if path[1] in c.model_fields)
    if not owners:
        return ""
    return (
        f"unknown key '{'.'.join(path)}' for {path[0]}.kind {kind!r}; it is a key of "
        f"kind {' or '.join(map(repr, owners))}: remove it or change the kind"
    )


def _format_error(exc: ValidationError, source: str, raw: Any) -> str:
    errors = exc.errors()
    # For a union (``str | ViewConfig``) pydantic reports one error per member; the most
    # specific one is the deepest, and a wrong value beats a wrong type.
    first = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
    # A misspelt key is also a missing one (`targt` for `target`): the spelling is the cause.
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if first["type"] == "missing" and extra:
        first = extra[0]
    path = _key_path(first["loc"], raw, keep_last=first["type"] == "missing")
    loc = ".".join(path)
    received = first.get("input")
    if first["type"] == "extra_forbidden":
        other_kind = _other_kinds_key(path, raw)
        if other_kind:
            return f"{source}: {other_kind}"
        hint = did_you_mean(path[-1], _allowed_keys(path[:-1])) if path else ""
        return f"{source}: unknown key {loc!r}. Remove it or check its spelling{hint}"
    if first["type"] == "missing":
        return f"{source}: missing required key {loc!r}"
    if not loc and first["type"] == "value_error":  # a check across sections names its keys
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    shown = repr(received) if not isinstance(received, dict) else "a mapping"
    others = {
        key
        for e in errors
        if (key := _key_path(e["loc"], raw, keep_last=e["type"] == "missing")) != path[: len(key)]
    }
    more = f" (and {len(others)} more problems)" if others else ""
    message = first["msg"].removeprefix("Value error, ")
    received_part = "" if "Received:" in message else f". Received: {shown}"
    return f"{source}: invalid value for {loc!r}: {message}{received_part}{more}"


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"--set expects dotted.key=value. Received: {override!r}; e.g. --set folds.n_splits=3"
        )
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split("\n")[0].split())
        raise ConfigError(
            f"--set {key}: the value is not valid YAML ({problem}). Received: {value!r}; "
            "quote it (--set 'key=\"text\"') or close its brackets"
        ) from exc
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section. Received: {override!r}")
        node = child
    node[parts[-1]] = parsed


def import_paths(cfg: Config) -> list[tuple[str, str]]:
    """``(key, path)`` for every import path ``cfg`` names: meta candidates of every level,
    backbone heads and base models' ``custom_objects`` modules. Short names (no dot) are
    tf-stacking's own and are not listed."""
    found = []
    levels = [("meta.candidates", cfg.meta.candidates)] + [
        (f"meta.levels.{i}.candidates", lv.candidates) for i, lv in enumerate(cfg.meta.levels)
    ]
    for where, candidates in levels:
        for i, spec in enumerate(candidates):
            found.append((f"{where}.{i}", spec if isinstance(spec, str) else spec.estimator))
    for name, model in cfg.base_models.items():
        head = model.head
        if head is not None:
            found.append(
                (f"base_models.{name}.head", head if isinstance(head, str) else head.estimator)
            )
        for module in model.custom_objects:
            found.append((f"base_models.{name}.custom_objects", module))
    return [(key, path) for key, path in found if "." in path]


def check_trusted_imports(cfg: Config, source: str) -> None:
    """Refuse import paths outside :data:`TRUSTED_PREFIXES`, before anything is imported.

    A config read back from a tracking server was written by whoever can write runs
    there; importing a module or class it names runs that person's code here.
    """
    for key, path in import_paths(cfg):
        if not path.startswith(TRUSTED_PREFIXES):
            raise ConfigError(
                f"{source}: {key} names {path!r}, outside {' and '.join(TRUSTED_PREFIXES)}; "
                "a config from a tracking server is not trusted to import other code. If you "
                "trust whoever wrote it, pass --trust-imports (trusted_imports=True)"
            )


def parse_config(
    raw: dict[str, Any],
    *,
    root: Path,
    source: str = "config",
    overrides: Sequence[str] = (),
    trusted_imports: bool = True,
    require_base_models: bool = True,
) -> Config:
    """Validate a raw mapping (e.g. from YAML) into a :class:`Config`.

    ``trusted_imports=False`` (configs read back from a tracking server) refuses every
    import path outside ``stacking.`` and ``sklearn.``: see :func:`check_trusted_imports`.
    ``require_base_models=False`` accepts an empty ``base_models:``, for what needs only the
    data and the folds (exporting the fold plan before any model is trained).
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level. Received: {raw!r:.80}; "
            "write `key: value` lines (data:, base_models:, ...)"
        )
    for override in overrides:
        _apply_override(raw, override)
    try:
        cfg = Config.model_validate(raw, context={"base_models_optional": not require_base_models})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, raw)) from exc
    if not trusted_imports:
        check_trusted_imports(cfg, source)
    return cfg.resolve_paths(root)


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """``file:line:column: not valid YAML: <problem> (line N: <the line>)``: where an editor
    jumps to, and the line itself, since the problem is often on the line before."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or first_line(exc)
    if mark is None:
        return f"{path}: not valid YAML: {problem}"
    lines = text.splitlines()
    where = f"{path}:{mark.line + 1}:{mark.column + 1}"

    def line(n: int) -> str:
        return lines[n].strip() if n < len(lines) else ""

    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if not line(mark.line) and context and start is not None:  # at the end of the file
        return (
            f"{where}: not valid YAML: {problem} ({context} at line {start.line + 1}: "
            f"{line(start.line)!r})"
        )
    return f"{where}: not valid YAML: {problem} (line {mark.line + 1}: {line(mark.line)!r})"


def load_config(
    path: str | Path, overrides: Sequence[str] = (), *, require_base_models: bool = True
) -> Config:
    """Read and validate a YAML config; ``overrides`` are ``dotted.key=value`` strings.

    A config file the user wrote is trusted like a script: its import paths are resolved.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the config as UTF-8"
        ) from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, text, exc)) from exc
    raw.setdefault("name", safe_name(path.stem)) if isinstance(raw, dict) else None
    return parse_config(
        raw,
        root=path.parent.resolve(),
        source=str(path),
        overrides=overrides,
        require_base_models=require_base_models,
    )
