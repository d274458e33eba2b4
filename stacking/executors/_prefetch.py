"""In-process execution that loads the next job's model while the current one predicts.

Loading a model (reading the file, rebuilding layers, restoring weights) is mostly
Python and I/O, predicting is TensorFlow kernels that release the GIL, so the two
overlap. The price is memory: two models are loaded at once (the one predicting and the
next one).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from stacking.config import ExecutorConfig
from stacking.executors._base import (
    Executor,
    Job,
    load_job,
    predict_job,
    progress_bar,
    register_executor,
    releasing_models,
)


class PrefetchExecutorConfig(ExecutorConfig):
    """In process, the next model loaded while the current one predicts (two in memory)."""

    kind: Literal["prefetch"] = "prefetch"


@register_executor(PrefetchExecutorConfig)
class PrefetchExecutor(Executor):
    """Like :class:`~stacking.executors.LocalExecutor`, with one model loaded ahead.

    Results and their order are the local executor's; ``on_result`` runs in the calling
    thread. A model that fails to load raises when its turn comes, so every job before it
    is delivered first, exactly as in the local executor.
    """

    models_in_memory = 2

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress

    @classmethod
    def from_config(cls, cfg: Any, *, progress: bool = True) -> PrefetchExecutor:
        return cls(progress=progress)

    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        if not jobs:
            return
        bar = progress_bar(jobs, self.progress)
        with (
            ThreadPoolExecutor(1, thread_name_prefix="stacking-prefetch") as loader,
            releasing_models() as release,
        ):
            ahead: Future | None = loader.submit(load_job, jobs[0])
            try:
                for i, job in enumerate(bar):
                    bar.set_postfix_str(job.label)
                    assert ahead is not None  # submitted for every job before its turn
                    model = ahead.result()  # the loader's error, named, re-raised here
                    ahead = loader.submit(load_job, jobs[i + 1]) if i + 1 < len(jobs) else None
                    outputs = predict_job(model, job)
                    del model
                    on_result(job, outputs)
                    del outputs
                    release()
            finally:
                if ahead is not None:  # a failure: drop the model loaded ahead
                    ahead.cancel()
                    ahead = None
