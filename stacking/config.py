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
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stacking.errors import ConfigError, DataFileNotFoundError

Task = Literal["auto", "binary", "multiclass", "multilabel", "regression"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class ViewConfig(_Strict):
    """Which columns a base model reads, and the shape one row is reshaped to."""

    columns: list[str] | str = Field(description="column names, or one glob such as 'px_*'")
    shape: list[int] | None = Field(None, description="per-row shape, e.g. [8, 8, 1]")
    dtype: Literal["float32", "float64", "int32", "int64"] = "float32"

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(d <= 0 for d in v)):
            raise ValueError(f"shape must be positive integers. Received: shape={v}")
        return v


class DataConfig(_Strict):
    train: Path
    test: Path | None = None
    id: str | None = Field(None, description="id column; default: the row number")
    target: str | list[str]
    task: Task = "auto"
    weight: str | None = Field(None, description="sample-weight column")
    views: dict[str, ViewConfig] = Field(default_factory=dict)


class FoldsConfig(_Strict):
    kind: Literal["auto", "kfold", "stratified", "group"] = Field(
        "auto", description="auto: stratified for classes, kfold for regression"
    )
    n_splits: int = Field(5, ge=2)
    seed: int = 0
    shuffle: bool = True
    column: str | None = Field(None, description="take each row's fold from this column")
    group: str | None = Field(None, description="group column, for kind: group")

    @model_validator(mode="after")
    def _group_needs_column(self) -> FoldsConfig:
        if self.kind == "group" and self.group is None and self.column is None:
            raise ValueError("kind: group needs `group: COLUMN` naming the group column")
        return self


class CandidateConfig(_Strict):
    name: str | None = None
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)


class BaseModelConfig(_Strict):
    path: Path
    input: str | ViewConfig | list[str | ViewConfig] = Field(
        description="a view name from data.views, an inline view, or a list for multi-input"
    )
    trained_on: Literal["folds", "external"] | None = Field(
        None, description="'folds' for a fold-model directory; 'external' for one model"
    )
    output: str | int | None = Field(None, description="which output of a multi-output model")
    layer: str | None = Field(None, description="backbone: the layer whose output is embedded")
    head: str | CandidateConfig | None = Field(
        None, description="backbone: the estimator cross-fitted on the embeddings"
    )
    outputs_are: Literal["auto", "proba", "logits"] = "auto"
    test_with: Literal["mean", "full"] = "mean"

    @model_validator(mode="after")
    def _backbone_keys(self) -> BaseModelConfig:
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


class FeaturesConfig(_Strict):
    kind: Literal["proba", "logit", "rank"] = "proba"
    drop_redundant: bool = True
    passthrough: list[str] = Field(default_factory=list)
    fwls: list[str] = Field(default_factory=list)


class LevelConfig(_Strict):
    candidates: list[str | CandidateConfig]


class MetaConfig(_Strict):
    features: FeaturesConfig | Literal["proba", "logit", "rank"] = Field(
        default_factory=FeaturesConfig
    )
    candidates: list[str | CandidateConfig] = Field(default_factory=lambda: ["default"])
    levels: list[LevelConfig] = Field(default_factory=list)
    bootstrap: int = Field(1000, ge=0, description="paired bootstrap resamples; 0 turns off")
    seed: int = 0

    @field_validator("features", mode="after")
    @classmethod
    def _expand(cls, v: Any) -> FeaturesConfig:
        return FeaturesConfig(kind=v) if isinstance(v, str) else v


class TrackingConfig(_Strict):
    enabled: bool = True
    uri: str | None = Field(None, description="default: MLflow's own default store")
    experiment: str = "tf-stacking"
    run_name: str | None = None


class CacheConfig(_Strict):
    enabled: bool = True
    dir: Path = Field(Path(".stacking_cache"), description="relative to the working folder")


class _ExecutorKeys(_Strict):
    batch_size: int = Field(4096, ge=1, description="rows per compiled call")


class LocalExecutorConfig(_ExecutorKeys):
    """In process, one model in memory at a time (the default)."""

    kind: Literal["local"] = "local"


class PrefetchExecutorConfig(_ExecutorKeys):
    """In process, the next model loaded while the current one predicts (two in memory)."""

    kind: Literal["prefetch"] = "prefetch"


class RayExecutorConfig(_ExecutorKeys):
    """One Ray task per (model, fold) job, on a local or remote Ray cluster."""

    kind: Literal["ray"] = "ray"
    address: str | None = Field(None, description="Ray cluster; default: start a local one")
    num_cpus: float = Field(1, gt=0, description="CPUs per Ray inference task")
    num_gpus: float = Field(0, ge=0, description="GPUs per Ray inference task")


def _default_kind(value: Any) -> Any:
    """``executor: {batch_size: 512}`` means the default (local) executor."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "local", **value}
    return value


# Each backend's keys live with its class; `kind` picks the class (and its key set).
ExecutorConfig = Annotated[
    LocalExecutorConfig | PrefetchExecutorConfig | RayExecutorConfig,
    Field(discriminator="kind"),
    BeforeValidator(_default_kind),
]


class Config(_Strict):
    name: str = "experiment"
    data: DataConfig
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    base_models: dict[str, BaseModelConfig]
    meta: MetaConfig = Field(default_factory=MetaConfig)
    metrics: list[str] = Field(default_factory=list, description="first is primary")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)

    @field_validator("base_models")
    @classmethod
    def _names(cls, v: dict[str, BaseModelConfig]) -> dict[str, BaseModelConfig]:
        if not v:
            raise ValueError("at least one base model is needed")
        for name in v:
            if not _NAME.match(name) or "__" in name:
                raise ValueError(
                    f"base model name {name!r} must start with a letter, use letters, digits, "
                    "'_', '-', '.', and not contain '__' (it separates model and output)"
                )
        return v

    def resolve_paths(self, root: Path) -> Config:
        """Make relative paths absolute against ``root`` (the YAML file's folder)."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (root / p).resolve()

        self.data.train = fix(self.data.train)
        self.data.test = fix(self.data.test)
        for model in self.base_models.values():
            model.path = fix(model.path)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


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


def _format_error(exc: ValidationError, source: str, raw: Any) -> str:
    errors = exc.errors()
    # For a union (``str | ViewConfig``) pydantic reports one error per member; the most
    # specific one is the deepest, and a wrong value beats a wrong type.
    first = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
    path = _key_path(first["loc"], raw, keep_last=first["type"] == "missing")
    loc = ".".join(path)
    received = first.get("input")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {loc!r}. Remove it or check its spelling"
    if first["type"] == "missing":
        return f"{source}: missing required key {loc!r}"
    shown = repr(received) if not isinstance(received, dict) else "a mapping"
    others = {
        key
        for e in errors
        if (key := _key_path(e["loc"], raw, keep_last=e["type"] == "missing")) != path[: len(key)]
    }
    more = f" (and {len(others)} more problems)" if others else ""
    return f"{source}: invalid value for {loc!r}: {first['msg']}. Received: {shown}{more}"


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"--set expects dotted.key=value. Received: {override!r}; e.g. --set folds.n_splits=3"
        )
    parsed = yaml.safe_load(value) if value else ""
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


def parse_config(
    raw: dict[str, Any], *, root: Path, source: str = "config", overrides: list[str] = ()
) -> Config:
    """Validate a raw mapping (e.g. from YAML) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level. Received: {raw!r}")
    for override in overrides:
        _apply_override(raw, override)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, raw)) from exc
    return cfg.resolve_paths(root)


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read and validate a YAML config; ``overrides`` are ``dotted.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    raw.setdefault("name", path.stem) if isinstance(raw, dict) else None
    return parse_config(raw, root=path.parent.resolve(), source=str(path), overrides=overrides)
