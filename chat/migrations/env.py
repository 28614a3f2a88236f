"""Alembic's entry point. The app runs the migrations itself at start-up (chat/database.py), on its own connection."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from chat import models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes['connection']
# render_as_batch: SQLite cannot alter a column in place; Alembic then copies the table instead.
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
