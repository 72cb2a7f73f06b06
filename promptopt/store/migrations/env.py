"""Alembic environment for promptopt's store.

There is no ``alembic.ini``: :mod:`promptopt.store.store` builds the alembic ``Config``
in code, points ``script_location`` at this package directory (so migrations work from
an installed wheel) and passes an open SQLAlchemy connection in
``config.attributes["connection"]``.

Only ``po_*`` tables are ours. Optuna's RDB storage may share the database, so
autogenerate is told to ignore every other table and the revision lives in
``po_alembic_version``, not in the ``alembic_version`` table Optuna uses.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from promptopt.store.schema import TABLE_PREFIX, VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE
    return True


def _configure_kwargs() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": True,
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: emit SQL for the URL's dialect without connecting."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        **_configure_kwargs(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # The store owns the connection and its transaction (and, on PostgreSQL, an
        # advisory lock that serialises concurrent upgrades).
        context.configure(connection=connection, **_configure_kwargs())
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **_configure_kwargs())
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
