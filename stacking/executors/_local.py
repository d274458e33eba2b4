"""In-process execution, one model in memory at a time (the default)."""

from __future__ import annotations

import gc

from tqdm.auto import tqdm

from stacking.executors._base import Executor, run_job


class LocalExecutor(Executor):
    def __init__(self, progress: bool = True) -> None:
        self.progress = progress

    def run(self, jobs, on_result):
        bar = tqdm(jobs, desc="inference", unit="model", disable=not self.progress or not jobs)
        for job in bar:
            bar.set_postfix_str(job.label)
            on_result(job, run_job(job))
            gc.collect()
