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
from collections.abc import Sequence
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

from stacking.errors import ConfigError, DataFileNotFoundError, first_line

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
    channels: Literal[1, 3] = 3
    text: str | None = Field(None, description="a column of strings")
    array: ArrayConfig | None = None
    shape: list[int] | None = Field(None, description="per-row shape, e.g. [8, 8, 1]")
    dtype: Literal["float16", "float32", "float64", "int32", "int64"] = "float32"

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

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str | None) -> str | None:
        if v is not None and (not _NAME.match(v) or "__" in v):
            raise ValueError(
                "a candidate name must start with a letter, use letters, digits, '_', '-', "
                "'.', and not contain '__' (it becomes a column prefix and an MLflow run name)"
            )
        return v


class BaseModelConfig(_Strict):
    path: Path
    input: str | ViewConfig | list[str | ViewConfig] | dict[str, str | ViewConfig] = Field(
        description="a view name from data.views, an inline view, a list (one per model input, "
        "in the model's declared order) or a mapping {model_input_name: view} (by name)"
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
    outputs_are: Literal["auto", "proba", "logits"] = "auto"
    test_with: Literal["mean", "full"] = "mean"

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


def candidate_name(spec: str | CandidateConfig) -> str:
    """The leaderboard name of a candidate entry: its ``name``, short name or class."""
    if isinstance(spec, str):
        return spec if "." not in spec else spec.rpartition(".")[2].lower()
    if spec.name:
        return spec.name
    key = spec.estimator
    return key if "." not in key else key.rpartition(".")[2].lower()


class LevelConfig(_Strict):
    candidates: list[str | CandidateConfig]


def _default_candidates() -> list[str | CandidateConfig]:
    return ["default"]


class MetaConfig(_Strict):
    features: FeaturesConfig | Literal["proba", "logit", "rank"] = Field(
        default_factory=FeaturesConfig
    )
    candidates: list[str | CandidateConfig] = Field(default_factory=_default_candidates)
    levels: list[LevelConfig] = Field(default_factory=list)
    bootstrap: int = Field(1000, ge=0, description="paired bootstrap resamples; 0 turns off")
    seed: int = 0

    @field_validator("features", mode="after")
    @classmethod
    def _expand(cls, v: Any) -> FeaturesConfig:
        return FeaturesConfig(kind=v) if isinstance(v, str) else v


class TrackingConfig(_Strict):
    """Where runs are recorded: ``kind`` picks a tracker of :mod:`stacking.tracking`.

    ``enabled: false`` is the older spelling of ``kind: none`` and still works.
    """

    kind: Literal["mlflow", "none"] = "mlflow"
    enabled: bool = True
    uri: str | None = Field(None, description="default: MLflow's own default store")
    experiment: str = "tf-stacking"
    run_name: str | None = None
    register_as: str | None = Field(
        None, description="register the ensemble model under this name (a new version)"
    )

    @model_validator(mode="after")
    def _disabled_is_none(self) -> TrackingConfig:
        if not self.enabled:
            self.kind = "none"
        return self


class CacheConfig(_Strict):
    enabled: bool = True
    kind: str = Field("local", description="a store of stacking.cache.STORES: local, memory")
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
    plots: bool = Field(True, description="PNG plots in the results folder and the run")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return _check_name(v, "name")

    @field_validator("base_models")
    @classmethod
    def _names(cls, v: dict[str, BaseModelConfig]) -> dict[str, BaseModelConfig]:
        if not v:
            raise ValueError("at least one base model is needed")
        for name in v:
            if not _NAME.match(name) or "__" in name or name.endswith("_"):
                raise ValueError(
                    f"base model name {name!r} must start with a letter, use letters, digits, "
                    "'_', '-', '.', and neither contain '__' nor end in '_' (its columns are "
                    "named <model>__<output>: 'a_' and class '_x' would collide with 'a')"
                )
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        """Names that point elsewhere in the config: views, and candidate names."""
        for name, model in self.base_models.items():
            specs = model.input if isinstance(model.input, (list, dict)) else [model.input]
            refs = specs.values() if isinstance(specs, dict) else specs
            for ref in refs:
                if isinstance(ref, str) and ref not in self.data.views:
                    raise ValueError(
                        f"base_models.{name}.input: no view {ref!r} in data.views "
                        f"(defined: {sorted(self.data.views)})"
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
            specs = model.input if isinstance(model.input, (list, dict)) else [model.input]
            views += [v for v in (specs.values() if isinstance(specs, dict) else specs)]
        for view in views:
            if isinstance(view, ViewConfig) and view.array is not None:
                view.array.train = _fix_array_path(view.array.train, root)
                if view.array.test is not None:
                    view.array.test = _fix_array_path(view.array.test, root)
        for model in self.base_models.values():
            model.path = fix(model.path)
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
) -> Config:
    """Validate a raw mapping (e.g. from YAML) into a :class:`Config`.

    ``trusted_imports=False`` (configs read back from a tracking server) refuses every
    import path outside ``stacking.`` and ``sklearn.``: see :func:`check_trusted_imports`.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level. Received: {raw!r:.80}; "
            "write `key: value` lines (data:, base_models:, ...)"
        )
    for override in overrides:
        _apply_override(raw, override)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, raw)) from exc
    if not trusted_imports:
        check_trusted_imports(cfg, source)
    return cfg.resolve_paths(root)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
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
        raise ConfigError(f"{path}: not valid YAML: {first_line(exc)}") from exc
    raw.setdefault("name", safe_name(path.stem)) if isinstance(raw, dict) else None
    return parse_config(raw, root=path.parent.resolve(), source=str(path), overrides=overrides)
