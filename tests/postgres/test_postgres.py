"""The room on PostgreSQL: the same store, the same migrations, the same app (a real server: see conftest.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from nicegui.testing import User
from sqlalchemy import text
from sqlmodel import Session, select

from chat.copy_room import copy_room
from chat.database import FIRST_REVISION, alembic_config, create_database_engine, upgrade
from chat.models import Kind, Message, Status
from chat.room import Room
from chat.store import Store

from ..conftest import eventually, open_room, status_shown
from ..test_schema import ROOT, a_room_with_messages, differences_from_the_models, recent


async def test_the_store_works_on_postgresql(postgres_url: str) -> None:
    store = Store(postgres_url)
    await store.open()
    try:
        question = await store.add(Message(author='Ann', author_id='ann', body='@gpt hi'))
        reply = await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot', status=Status.STREAMING,
                                        reply_to=question.id))
        await store.save(reply.id, body='Half an answer')  # type: ignore[arg-type]
        assert [m.body for m in await store.context_for(question.id, 10)] == ['@gpt hi']  # type: ignore[arg-type]
        assert await store.interrupt_abandoned_replies() == [reply.id]
        stored = await store.get(reply.id)  # type: ignore[arg-type]
        assert stored is not None and (stored.status, stored.body) == (Status.INTERRUPTED, 'Half an answer')
        # Times come back as the same moment, whatever the server's own time zone.
        assert stored.created_at.tzinfo is not None
        assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    finally:
        await store.close()
    assert differences_from_the_models(postgres_url) == []


def test_a_room_made_by_an_older_version_is_upgraded_with_its_messages(postgres_url: str) -> None:
    engine = create_database_engine(postgres_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), FIRST_REVISION)  # the first release on PostgreSQL
            connection.execute(text("INSERT INTO message (kind, author, author_id, body, status, created_at, "
                                    "updated_at) VALUES ('user', 'Ann', 'ann', 'from before', 'done', now(), now())"))
        upgrade(engine)
        with Session(engine) as session:
            [kept] = session.exec(select(Message)).all()
            assert (kept.body, kept.usage_estimated, kept.lease_until) == ('from before', False, None)
    finally:
        engine.dispose()
    assert differences_from_the_models(postgres_url) == []


# Each instance is its own process: each says it is ready (Python, SQLAlchemy and Alembic imported, a connection
# open), then waits for the word; the test gives it to all of them at once, once all are ready.
START_AT_ONCE = """
import sys
from chat.database import create_database_engine, upgrade
engine = create_database_engine(sys.argv[1])
engine.connect().close()  # the pool keeps it: the upgrade starts without a connection's set-up
print('ready', flush=True)
sys.stdin.readline()
upgrade(engine)
"""


def test_instances_starting_at_once_on_an_empty_database_all_start(postgres_url: str) -> None:
    command_line = [sys.executable, '-c', START_AT_ONCE, postgres_url]
    starting = [subprocess.Popen(command_line, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(8)]
    try:  # (eight: without the lock, some nearly always collide)
        for instance in starting:
            assert instance.stdout.readline() == 'ready\n', instance.communicate(timeout=60)[1]  # type: ignore[union-attr]
        for instance in starting:
            instance.stdin.write('go\n')  # type: ignore[union-attr]
            instance.stdin.flush()  # type: ignore[union-attr]
        for instance in starting:
            _, errors = instance.communicate(timeout=60)
            assert instance.returncode == 0, errors
    finally:
        for instance in starting:
            instance.kill()
    engine = create_database_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text('SELECT count(*) FROM alembic_version')).scalar_one() == 1
    finally:
        engine.dispose()
    assert differences_from_the_models(postgres_url) == []


def test_a_sqlite_room_copied_into_postgresql_keeps_its_messages_and_goes_on(tmp_path: Path,
                                                                             postgres_url: str) -> None:
    source = f'sqlite:///{tmp_path / "room.db"}'
    originals = asyncio.run(a_room_with_messages(source))
    assert copy_room(source, postgres_url) == 3
    copies = asyncio.run(recent(postgres_url))
    same = ['id', 'kind', 'author', 'author_id', 'body', 'status', 'reply_to', 'completion_tokens']
    assert [message.model_dump(include=set(same)) for message in copies] == \
        [message.model_dump(include=set(same)) for message in originals]
    assert [m.created_at.replace(tzinfo=None) for m in copies] == [m.created_at for m in originals]  # naive UTC

    async def add_one() -> Message:
        store = Store(postgres_url)
        await store.open()
        try:
            return await store.add(Message(author='Cy', author_id='cy', body='after the copy'))
        finally:
            await store.close()
    assert asyncio.run(add_one()).id == originals[-1].id + 1  # type: ignore[operator]


@pytest.fixture
def app_args(postgres_url: str) -> list[str]:
    return ['--no-browser', '--no-seed', '--db', postgres_url, '--provider', 'demo']


async def test_the_app_runs_on_postgresql(user: User, room: Room) -> None:
    await open_room(user)
    user.find(marker='input').type('@gpt hello from PostgreSQL')
    user.find(marker='send').click()
    await user.should_see('hello from PostgreSQL', retries=50)
    for _ in range(200):
        replies = [m for m in await room.store.recent(10) if m.kind == Kind.BOT]
        if replies and replies[0].status == Status.DONE:
            break
        await asyncio.sleep(0.05)
    assert replies[0].status == Status.DONE and replies[0].body
    await eventually(lambda: 'tokens' in status_shown(user, replies[0].id))  # type: ignore[arg-type]
