"""Crashes, a database that refuses writes, and a provider that comes and goes: nothing lost, never stuck."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nicegui.testing import User
from sqlalchemy import event

from chat.models import Status
from chat.room import Room

from .browser import free_port, serves
from .conftest import eventually, open_room
from .fake_openai import FakeOpenAI, Script, numbered_tokens

ROOT = Path(__file__).parent.parent


def start_app(db_path: Path, base_url: str) -> subprocess.Popen[bytes]:
    """The app on a free port, once it serves it (if another program took the port first, the app exits at once:
    then on another)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith('PYTEST_')}
    environment.update(OPENAI_API_KEY='sk-test', OPENAI_BASE_URL=base_url)
    for _ in range(3):
        port = free_port()
        app = subprocess.Popen(
            [sys.executable, 'main.py', '--no-browser', '--port', str(port), '--db', str(db_path), '--provider',
             'openai', '--retries', '0'], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while app.poll() is None and not serves(app.pid, port):
            assert time.monotonic() < deadline, 'the app did not serve its port'
            time.sleep(0.05)
        if app.poll() is None:
            return app
    raise RuntimeError('the app exited before serving, three times')


def rows(db_path: Path) -> list[tuple[int, str, str, str]]:
    with sqlite3.connect(db_path) as connection:
        return connection.execute('SELECT id, kind, status, body FROM message ORDER BY id').fetchall()


@pytest.fixture
def slow_provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(Script(tokens=numbered_tokens(600), delay=0.02)) as server:
        yield server


def test_sigkill_mid_reply_loses_at_most_the_last_flush(tmp_path: Path, slow_provider: FakeOpenAI) -> None:
    """The first-run script asks @gpt 9.2 s in; we kill the app while that reply streams, then start it again."""
    db_path = tmp_path / 'chat.db'
    app = start_app(db_path, slow_provider.base_url)
    try:
        deadline = time.monotonic() + 30
        while len(slow_provider.sent) < 150:
            assert time.monotonic() < deadline and app.poll() is None, 'the reply never streamed'
            time.sleep(0.02)
        app.send_signal(signal.SIGKILL)
        killed_at = time.time()
        app.wait(5)
    finally:
        app.kill()
    before_restart = rows(db_path)

    restarted = start_app(db_path, slow_provider.base_url)
    try:
        deadline = time.monotonic() + 20
        while not any(status == 'interrupted' for _, _, status, _ in rows(db_path)):
            assert time.monotonic() < deadline and restarted.poll() is None, 'the reply was not marked interrupted'
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGINT)
        restarted.wait(10)

    after = rows(db_path)
    people = [(id_, body) for id_, kind, _, body in after if kind == 'user']
    assert [body for _, body in people][:6] == [
        "Hey, glad you're here.", "What's up?", "I'm hoping to show how reactive this room is.",
        'Could you show streaming a ChatGPT response?', 'By updating the DB and having every tab follow along?',
        "Yeah. @gpt do you think that's a good idea?"]
    assert len({body for _, body in people}) == len(people), 'a message was stored twice'
    (reply,) = [row for row in after if row[1] == 'bot']
    assert reply[2] == Status.INTERRUPTED
    assert [row for row in before_restart if row[1] == 'user'] == [row for row in after if row[1] == 'user'][
        :len([row for row in before_restart if row[1] == 'user'])]
    full_text = ''.join(token for _, token in slow_provider.sent)
    assert full_text.startswith(reply[3])
    # Saves are 0.25 s apart, and the write itself takes its turn on the database thread of a machine as busy as CI's:
    # text sent a second before the kill must be on disk (the reply had streamed for 3 s, so a lost save shows).
    sent_well_before_the_kill = ''.join(token for at, token in slow_provider.sent if at < killed_at - 1.0)
    assert reply[3].startswith(sent_well_before_the_kill), 'more than the last second of text was lost'
    with sqlite3.connect(db_path) as connection:
        assert connection.execute('PRAGMA integrity_check').fetchone() == ('ok',)


def refuse_writes(room: Room, pragma: str) -> Callable[[], None]:
    """Make the real SQLite file refuse writes, as a read-only file or a full disk would; returns the undo."""
    def on_connect(connection: Any, _record: Any) -> None:
        connection.execute(f'PRAGMA {pragma}')

    event.listen(room.store.engine, 'connect', on_connect)
    room.store.engine.dispose()  # pooled connections are replaced by new ones that carry the pragma

    def undo() -> None:
        event.remove(room.store.engine, 'connect', on_connect)
        room.store.engine.dispose()
    return undo


@pytest.mark.parametrize('pragma', ['query_only=ON', 'max_page_count=1'])
async def test_a_database_that_refuses_writes_is_reported_and_loses_nothing(
        user: User, room: Room, pragma: str, caplog: pytest.LogCaptureFixture) -> None:
    await open_room(user)
    with user:
        box = user.find(marker='input').elements.pop()
    box.value = 'stored before the trouble'
    user.find(marker='send').click()
    await eventually(lambda: len(room.recent) == 1)

    undo = refuse_writes(room, pragma)
    box.value = 'x' * 4000
    user.find(marker='send').click()
    await eventually(lambda: 'could not be saved' in (box.error or ''))
    assert box.value == 'x' * 4000 and len(room.recent) == 1
    caplog.clear()  # the error was logged (the fixture would fail the test on it otherwise); we expected it

    undo()
    user.find(marker='send').click()  # the same text, once the disk is writable again
    await eventually(lambda: len(room.recent) == 2)
    assert [m.body for m in await room.store.recent(10)] == ['stored before the trouble', 'x' * 4000]


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return openai_args


async def ask_and_wait(user: User, room: Room, text: str) -> None:
    count = len(room.recent)
    with user:
        user.find(marker='input').elements.pop().value = text
    user.find(marker='send').click()
    await eventually(lambda: len(room.recent) == count + 2 and not room.recent[-1].status.in_progress)


async def test_a_provider_that_is_down_then_flaps_then_recovers(user: User, room: Room) -> None:
    held = socket.socket()  # bound, not listening: a connection is refused, and no other program can take the port
    held.bind(('127.0.0.1', 0))
    port = held.getsockname()[1]
    provider = room.bots['gpt'].provider
    provider.client = provider.client.with_options(base_url=f'http://127.0.0.1:{port}/v1')  # type: ignore[attr-defined]
    await open_room(user)

    await ask_and_wait(user, room, '@gpt are you there?')  # nothing listens on the port yet
    assert room.recent[-1].status == Status.ERROR and 'Could not reach' in (room.recent[-1].error or '')

    held.close()
    with FakeOpenAI(Script(status=503), port=port) as server:  # it comes up, overloaded
        await ask_and_wait(user, room, '@gpt now?')
        assert room.recent[-1].status == Status.ERROR and '503' in (room.recent[-1].error or '')
        server.script = Script(tokens=numbered_tokens(8), malformed_after=3)  # then it sends garbage
        await ask_and_wait(user, room, '@gpt and now?')
        assert room.recent[-1].status == Status.ERROR and 'malformed' in (room.recent[-1].error or '')
        server.script = Script(tokens=numbered_tokens(8))  # and then it works
        await ask_and_wait(user, room, '@gpt finally?')
        assert room.recent[-1].status == Status.DONE and room.recent[-1].body == ''.join(numbered_tokens(8))
