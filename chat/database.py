"""The database itself: its engine (SQLite tuned for a chat, or PostgreSQL through psycopg) and its shape, kept by
Alembic migrations (chat/migrations/versions) for SQLite and PostgreSQL alike. Skip this on a first read.

The app upgrades its database itself when it starts, so `python main.py` stays the only command to run. A room
made before the app had migrations (it has the table but no `alembic_version`) is first marked as being at 0001,
which is exactly the table it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

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


def create_database_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != 'sqlite':
        try:
            return create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as missing:
            raise SystemExit(f'{parsed.get_backend_name()} needs a driver that is not installed ({missing.name}); '
                             "for PostgreSQL: pip install -e '.[postgres]'") from missing
    if parsed.database and parsed.database != ':memory:':
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={'check_same_thread': False, 'timeout': 10})

    @event.listens_for(engine, 'connect')
    def tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers never wait for the writer; NORMAL sync is durable at each commit in WAL mode
        # except on power loss, which is the usual trade for a chat app.
        cursor = dbapi_connection.cursor()
        cursor.execute('PRAGMA journal_mode=WAL')
        cursor.execute('PRAGMA synchronous=NORMAL')
        cursor.execute('PRAGMA busy_timeout=10000')
        cursor.close()

    return engine
