"""Alembic environment for the results store.

The harness runs migrations itself (`harness db upgrade`, or creating a new store), handing
Alembic an open connection in `config.attributes["connection"]`. Developers making a new
revision can also point Alembic at a database: `alembic -c harness/store/migrations/alembic.ini
-x db=URL revision -m "..."`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from harness.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        assert url, "no database URL: alembic -x db=URL, or sqlalchemy.url in alembic.ini"
        with create_engine(url).connect() as conn:
            _run(conn)
