"""The database's shape comes from Alembic migrations (chat/database.py, chat/migrations), and a room can be copied
into another database (chat/copy_room.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, create_engine, select

from chat.copy_room import copy_room
from chat.database import create_database_engine, upgrade
from chat.models import Kind, Message, Status
from chat.store import Store

ROOT = Path(__file__).resolve().parents[1]

TABLE_BEFORE_MIGRATIONS = """
CREATE TABLE message (
    id INTEGER NOT NULL, kind VARCHAR(20) NOT NULL, author VARCHAR NOT NULL, author_id VARCHAR NOT NULL,
    body VARCHAR NOT NULL, status VARCHAR(20) NOT NULL, reply_to INTEGER, error VARCHAR, model VARCHAR,
    prompt_tokens INTEGER, completion_tokens INTEGER, first_token_ms INTEGER, duration_ms INTEGER,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_message_status ON message (status);
CREATE INDEX ix_message_author_id ON message (author_id);
"""


def differences_from_the_models(url: str) -> list:
    """What Alembic's autogenerate would change to make the database match the models: nothing, if the
    migrations are complete."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()


def sqlite_url(path: Path) -> str:
    return f'sqlite:///{path}'


async def a_room_with_messages(url: str) -> list[Message]:
    store = Store(url)
    await store.open()
    question = await store.add(Message(author='Ann', author_id='ann', body='@gpt what is a migration?'))
    reply = await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot', body='A change of shape.',
                                    status=Status.DONE, reply_to=question.id, completion_tokens=5))
    await store.add(Message(author='Bo', author_id='bo', body='émoji 🎉 and\nnew lines'))
    stored = await store.recent(10)
    await store.close()
    assert [message.id for message in stored] == [question.id, reply.id, stored[-1].id]
    return stored


def test_a_new_database_gets_exactly_the_models_tables(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / 'new.db')
    asyncio.run(a_room_with_messages(url))
    assert differences_from_the_models(url) == []


def test_a_room_made_before_migrations_keeps_its_messages(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / 'old.db')
    with contextlib.closing(sqlite3.connect(tmp_path / 'old.db')) as connection, connection:
        connection.executescript(TABLE_BEFORE_MIGRATIONS)  # what create_all made before the app had migrations
        connection.execute("INSERT INTO message (kind, author, author_id, body, status, created_at, updated_at) "
                           "VALUES ('user', 'Ann', 'ann', 'from before', 'done', '2026-11-01 10:00:00', "
                           "'2026-11-01 10:00:00')")
    upgrade(create_database_engine(url))
    engine = create_engine(url)
    with Session(engine) as session:
        assert [message.body for message in session.exec(select(Message))] == ['from before']
        assert session.execute(text('SELECT version_num FROM alembic_version')).scalar_one() is not None
    assert 'message' in inspect(engine).get_table_names()
    engine.dispose()
    assert differences_from_the_models(url) == []


def test_copy_room_copies_every_message_with_its_id_and_refuses_a_room_that_has_messages(tmp_path: Path) -> None:
    source, target = sqlite_url(tmp_path / 'from.db'), sqlite_url(tmp_path / 'to.db')
    originals = asyncio.run(a_room_with_messages(source))
    assert copy_room(source, target) == 3
    copies = asyncio.run(recent(target))
    assert [message.model_dump() for message in copies] == [message.model_dump() for message in originals]
    with pytest.raises(SystemExit, match='already holds messages'):
        copy_room(source, target)


def test_copy_room_from_the_command_line_copies_batch_after_batch(tmp_path: Path) -> None:
    source, target = tmp_path / 'from.db', tmp_path / 'to.db'
    engine = create_database_engine(sqlite_url(source))
    upgrade(engine)
    with Session(engine) as session:
        session.add_all([Message(author='Ann', author_id='ann', body=f'message {n}') for n in range(2_500)])
        session.commit()
        session.execute(text('DELETE FROM message WHERE id BETWEEN 995 AND 1005'))  # a gap across a batch's end
        session.commit()
    engine.dispose()

    def copy() -> subprocess.CompletedProcess[str]:
        environment = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)}
        return subprocess.run([sys.executable, '-m', 'chat.copy_room', str(source), str(target)], cwd=ROOT,
                              env=environment, capture_output=True, text=True, timeout=60)
    done = copy()
    assert done.returncode == 0 and 'copied 2,489 message(s)' in done.stderr, done.stderr
    rows = {path: sqlite3.connect(path).execute('SELECT id, body FROM message ORDER BY id').fetchall()
            for path in (source, target)}
    assert rows[target] == rows[source] and len(rows[target]) == 2_489
    again = copy()
    assert again.returncode != 0 and 'already holds messages: nothing was copied' in again.stderr, again.stderr
    assert sqlite3.connect(target).execute('SELECT count(*) FROM message').fetchone() == (2_489,)


async def recent(url: str) -> list[Message]:
    store = Store(url)
    await store.open()
    try:
        return await store.recent(100)
    finally:
        await store.close()
