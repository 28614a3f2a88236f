"""The database's shape, kept by Alembic migrations (chat/migrations/versions), for SQLite and PostgreSQL alike.

The app upgrades its database itself when it starts, so `python main.py` stays the only command to run. A room
made before the app had migrations (it has the table but no `alembic_version`) is first marked as being at 0001,
which is exactly the table it has.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / 'migrations'
FIRST_REVISION = '0001'
UPGRADE_LOCK = 7_450_001  # any number: two instances starting at once on PostgreSQL upgrade one after the other


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option('script_location', str(MIGRATIONS))
    config.attributes['connection'] = connection  # read by migrations/env.py
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (a blocking call: the store runs it on its worker thread)."""
    with engine.begin() as connection:
        if connection.dialect.name == 'postgresql':
            connection.execute(text('SELECT pg_advisory_xact_lock(:key)'), {'key': UPGRADE_LOCK})
        tables = inspect(connection).get_table_names()
        config = alembic_config(connection)
        if 'message' in tables and 'alembic_version' not in tables:
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, 'head')
