"""A job callable that stands in for `RunJob` in tests of the local launch (harness/launch/local.py).

`TimedJob` moves its run through the store as a real job does (started, then completed, under the launch's
owner token) but trains nothing: it writes down when it ran and which GPUs it was shown, so a test can tell
how many jobs ran at once and on which GPU. It is module-level so that a job process can unpickle it
(conftest's `importable_by_jobs` puts the repository on the jobs' PYTHONPATH); it imports little, so that a
job starts soon after it is submitted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TimedJob:
    db_url: str
    run_hash: str
    owner: str
    # a folder shared by the jobs of one test: each writes `<hash>.start` when it starts, `<hash>.json` at its end
    folder: str
    # the job holds on until this many jobs have started (at most `hold_s`), so that jobs meant to run
    # together overlap however slowly a loaded machine starts them
    together: int = 1
    hold_s: float = 10.0
    # then it works this long
    seconds: float = 0.1

    def __call__(self) -> None:
        start = time.time()
        folder = Path(self.folder)
        # a job of several tasks (a run of several GPUs): the others only say what they were shown
        rank, tasks = os.environ.get("SUBMITIT_LOCAL_GLOBALID", "0"), os.environ.get("SUBMITIT_LOCAL_NTASKS", "1")
        if rank != "0":
            (folder / f"{self.run_hash}.rank{rank}").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
            return
        (folder / f"{self.run_hash}.start").write_text(str(start))
        from harness.store import open_store

        store = open_store(self.db_url, create=False)
        if not store.mark_started(self.run_hash, self.owner, "test-host", {}):
            raise RuntimeError(f"run {self.run_hash[:10]} is not this job's")
        deadline = time.monotonic() + self.hold_s
        while len(list(folder.glob("*.start"))) < self.together and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.seconds)
        seen = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(), "tasks": tasks}
        (folder / f"{self.run_hash}.json").write_text(json.dumps(seen))
        if not store.finish(self.run_hash, self.owner, "completed"):
            raise RuntimeError(f"run {self.run_hash[:10]} could not be marked completed")
        store.close()
