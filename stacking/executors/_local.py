"""In-process execution, one model in memory at a time (the default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from stacking.config import ExecutorConfig
from stacking.executors._base import (
    Executor,
    Job,
    naming_model,
    progress_bar,
    register_executor,
    releasing_models,
    run_job,
)


class LocalExecutorConfig(ExecutorConfig):
    """In process, one model in memory at a time (the default)."""

    kind: Literal["local"] = "local"


@register_executor(LocalExecutorConfig)
class LocalExecutor(Executor):
    """Run jobs in order in this process; each model is loaded, predicts, and is freed.

    >>> LocalExecutor(progress=False).run(jobs, on_result)  # doctest: +SKIP
    """

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress

    @classmethod
    def from_config(cls, cfg: Any, *, progress: bool = True) -> LocalExecutor:
        return cls(progress=progress)

    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        bar = progress_bar(jobs, self.progress)
        with releasing_models() as release:
            for job in bar:
                bar.set_postfix_str(job.label)
                with naming_model(job):
                    outputs = run_job(job)
                on_result(job, outputs)
                del outputs
                release()
