"""A new executor, added by this module alone: its config class and its class, registered
with ``@register_executor``, then named by a config (``executor: {kind: inline}``) that an
experiment runs end to end, with no change anywhere else. It also keeps the executor
contract (the reusable :class:`ExecutorContract`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pytest
from conftest import UNTRACKED, assert_same_results
from pydantic import Field
from test_executors_conformance import ExecutorContract

from stacking import Experiment
from stacking.config import ExecutorConfig
from stacking.executors import Executor, Job, register_executor, releasing_models, run_job


class InlineExecutorConfig(ExecutorConfig):
    """Runs jobs one by one in this process, writing down each one it ran."""

    kind: Literal["inline"] = "inline"
    note: str = Field("inline", description="a key of this kind only")


class InlineExecutor(Executor):
    ran: ClassVar[list[tuple[str, str]]] = []  # (note, cache key) of every prediction made

    def __init__(self, note: str) -> None:
        self.note = note

    @classmethod
    def from_config(cls, cfg: InlineExecutorConfig, *, progress: bool = True) -> InlineExecutor:
        return cls(cfg.note)

    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        with releasing_models() as release:
            for job in jobs:
                outputs = run_job(job)
                self.ran.extend((self.note, key) for key in job.keys)
                on_result(job, outputs)
                del outputs
                release()


@pytest.fixture(scope="module", autouse=True)
def inline_kind() -> Iterator[None]:
    """Register the kind for this module's tests only (the registry is process-wide)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ExecutorConfig, "kinds", dict(ExecutorConfig.registered()))
        register_executor(InlineExecutorConfig)(InlineExecutor)
        yield


@pytest.mark.parametrize("kind", ["inline"])
class TestInlineExecutorContract(ExecutorContract):
    samples = {"inline": {"kind": "inline", "note": "contract"}}
    in_order = {"inline"}


def test_plugin_executor_runs_an_experiment_named_in_the_config(
    multiclass_project, untracked_run, tmp_path
):
    section = {"kind": "inline", "note": "e2e", "batch_size": 512}
    cfg = multiclass_project.config(tmp_path, **UNTRACKED, executor=section)
    experiment = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False)
    assert type(experiment.executor) is InlineExecutor
    assert experiment.config.executor.batch_size == 512
    InlineExecutor.ran.clear()
    experiment.run()
    # Every prediction the run needed (each cached once) was made by the new executor.
    made = [key for note, key in InlineExecutor.ran if note == "e2e"]
    assert made and len(made) == len(set(made)) == experiment.cache.info()["entries"]
    assert_same_results(tmp_path / "out", untracked_run)


def test_plugin_executor_keys_follow_the_kind():
    from stacking.config import parse_config
    from stacking.errors import ConfigError

    raw = {"data": {"train": "t.csv", "target": "y", "views": {"x": {"columns": ["a"]}}}}
    raw["base_models"] = {"m": {"path": "m.keras", "input": "x", "trained_on": "external"}}
    cfg = parse_config({**raw, "executor": {"kind": "inline", "note": "n"}}, root=Path("/tmp"))
    assert isinstance(cfg.executor, InlineExecutorConfig) and cfg.executor.note == "n"
    assert cfg.to_dict()["executor"] == {"kind": "inline", "batch_size": 4096, "note": "n"}
    with pytest.raises(ConfigError, match=r"unknown key 'executor.note'"):
        parse_config({**raw, "executor": {"kind": "local", "note": "n"}}, root=Path("/tmp"))
