"""Keeping the store's password off disk: jobs get the URL without it, and the password in their environment.

A URL carries a password in two forms, `user:password@` and `?password=` (both libpq's); both are taken out.
A `passfile` or `service` parameter (or PGPASSFILE, PGSERVICEFILE) names a file libpq reads itself in the job:
the URL keeps the name, and the harness never reads the file.

submitit pickles each job's callable into the output folder (often a cluster's shared file system) and
keeps it after the job; the callable therefore holds the store URL with its password removed. The password
reaches the job through the environment it inherits from the launcher (submitit's local executor copies the
launcher's environment; `sbatch` exports it by default): libpq reads `PGPASSWORD` itself, so nothing of the
harness ever writes it down. `~/.pgpass` or a `PGPASSWORD` the user exported work the same way.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from harness.store import db

PASSWORD_ENV = "PGPASSWORD"


def job_url(url: str) -> str:
    """The URL a job is given (and submitit writes to disk): the same database, no password in any form."""
    if "://" not in url or db.password_of(url) is None:
        return url
    return db.without_password(url).render_as_string(hide_password=False)


def password_of(url: str) -> str | None:
    return db.password_of(url) if "://" in url else None


@contextlib.contextmanager
def password_in_environment(url: str) -> Iterator[None]:
    """While jobs are submitted: the URL's password in PGPASSWORD, where the job processes inherit it."""
    password = password_of(url)
    if password is None:
        yield
        return
    before = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = password
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = before
