"""The results store (SQLite by default, PostgreSQL by URL): the only code that speaks SQL.

    from harness.store import open_store
    store = open_store("sqlite:///runs/harness.db")   # or postgresql+psycopg://user:pw@host/db
    store.register_experiment(spec.name, text, path); store.register_runs(spec.name, planned_runs)
    store.log_epoch(run_hash, epoch, {"top1": 71.2}); store.runs(spec="distillation")

Tables and views are described in harness/store/README.md.
"""

from harness.store.errors import (NoStore, NotOwner, SchemaOutOfDate, StoreError, StoreLocked, StoreUnreachable,
                                  UnknownRun)
from harness.store.migrate import store_revision, upgrade_store
from harness.store.records import FINISHED, STATUSES, ExperimentRecord, RunRecord, RunTable
from harness.store.store import NewRun, Store, open_store

__all__ = ["FINISHED", "STATUSES", "ExperimentRecord", "NewRun", "NoStore", "NotOwner", "RunRecord", "RunTable",
           "SchemaOutOfDate", "Store", "StoreError", "StoreLocked", "StoreUnreachable", "UnknownRun", "open_store",
           "store_revision", "upgrade_store"]
