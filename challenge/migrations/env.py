"""Alembic environment: runs migrations against the URL given by challenge.db.alembic_config."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import challenge.models  # noqa: F401 - registers the tables on SQLModel.metadata
import forum.models  # noqa: F401 - the forum's tables, migrated by their own Alembic branch
from challenge.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
