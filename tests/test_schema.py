"""The database's shape comes from Alembic migrations (chat/schema.py, chat/migrations), and a room can be copied
into another database (chat/copy_room.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, create_engine, select

from chat.copy_room import copy_room
from chat.models import Kind, Message, Status
from chat.schema import upgrade
from chat.store import Store, create_database_engine


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
    engine = create_engine(url)
    SQLModel.metadata.create_all(engine)  # what the app did before it had migrations
    with Session(engine) as session:
        session.add(Message(author='Ann', author_id='ann', body='from before'))
        session.commit()
    engine.dispose()
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


async def recent(url: str) -> list[Message]:
    store = Store(url)
    await store.open()
    try:
        return await store.recent(100)
    finally:
        await store.close()
