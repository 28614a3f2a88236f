"""Things a user sees that no other test checked: the page's Content-Security-Policy, how much of the room the
model reads, rate limits' real windows, presence with two tabs and a crowd, a name across a reload, a database that
refuses a reply's writes, and --reset."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from nicegui import Client
from nicegui.testing import User

from chat import final_saves as final_saves_module
from chat import limits
from chat.command_line import confirm_reset, parse_settings
from chat.models import Status
from chat.room import Room

from .browser import free_port
from .conftest import count_connected_returns, eventually, open_room, people_listed
from .fake_openai import FakeOpenAI, Script, numbered_tokens
from .test_bot import ask, replies
from .test_durability import refuse_writes
from .test_room import my_name, rename

ROOT = Path(__file__).parent.parent


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return [*openai_args, '--max-context-chars', '300', '--messages-per-10s', '2']


async def test_the_page_allows_only_its_own_scripts(user: User) -> None:
    response = await user.http_client.get('/')
    policy = response.headers['content-security-policy']
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)  # type: ignore[union-attr]
    assert "script-src 'self' 'nonce-" in policy and "img-src 'self' data:" in policy and "object-src 'none'" in policy
    scripts = re.findall(r'<script[^>]*>', response.text)
    assert scripts and all(f'nonce="{nonce}"' in script for script in scripts), scripts
    assert nonce != re.search(r"'nonce-([^']+)'",  # a fresh nonce for every page
                              (await user.http_client.get('/')).headers['content-security-policy']).group(1)


async def test_the_model_reads_at_most_max_context_chars_of_the_room(create_user: Callable[[], User], room: Room,
                                                                    fake_openai: FakeOpenAI) -> None:
    tabs = [create_user() for _ in range(3)]
    for tab in tabs:
        await open_room(tab)
    for number, tab in enumerate(tabs):  # three people, so no one's rate limit gets in the way
        await ask(tab, f'{number}: ' + 'long words ' * 12)
        await eventually(lambda number=number: len(room.recent) == number + 1)
    await ask(tabs[0], '@gpt what did they say? [[tokens:2]]')
    await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress)
    turns = fake_openai.requests[-1]['body']['messages'][1:]  # after the system prompt
    assert sum(len(turn['content']) for turn in turns) <= 300
    assert turns[-1]['content'].endswith('@gpt what did they say? [[tokens:2]]')  # the question always stays
    assert len(turns) < 4, 'the oldest messages should have been left out'
    long_question = '@gpt ' + 'why ' * 100 + '[[tokens:2]]'  # longer than max-context-chars by itself
    await ask(tabs[1], long_question)
    await eventually(lambda: len(fake_openai.requests) == 2 and not any(r.status.in_progress for r in replies(room)))
    assert [turn['content'] for turn in fake_openai.requests[-1]['body']['messages'][1:]] == [
        f'{my_name(tabs[1])}: {long_question}']  # the question alone, whole


async def test_a_rate_limits_window_is_its_real_length_and_its_wait_is_told(
        user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limits, 'time', SimpleNamespace(monotonic=lambda: clock[0]))
    await open_room(user)
    for number in range(2):
        await ask(user, f'message {number}')
        await eventually(lambda number=number: len(room.recent) == number + 1)
    clock[0] += 6.5
    await ask(user, 'too soon')
    with user:
        box = user.find(marker='input').elements.pop()
    await eventually(lambda: 'Try again in 4 s' in (box.error or ''))  # 10 s from the first, 6.5 s on: 3.5, rounded
    clock[0] += 3.4
    await ask(user, 'still too soon')
    await eventually(lambda: 'Try again in 0 s' in (box.error or ''))
    clock[0] += 0.2  # 10.1 s after the first message: it has left the window
    box.value = ''
    await ask(user, 'now it may go')
    await eventually(lambda: room.recent[-1].body == 'now it may go')


async def test_the_question_window_is_a_minute(user: User, room: Room, fake_openai: FakeOpenAI,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limits, 'time', SimpleNamespace(monotonic=lambda: clock[0]))
    await open_room(user)
    with user:
        box = user.find(marker='input').elements.pop()
    for number in range(room.settings.gpt_per_minute):  # 10.1 s apart: the 10 s message window never refuses
        await ask(user, f'@gpt question {number} [[tokens:1]]')
        await eventually(lambda number=number: len(replies(room)) == number + 1 and not room.replies.in_progress)
        clock[0] += 10.1
    clock[0] = 1055.0
    await ask(user, '@gpt one more [[tokens:1]]')
    await eventually(lambda: 'Try again in 5 s' in (box.error or ''))  # a minute after the first question
    clock[0] = 1060.1
    box.value = ''
    await ask(user, '@gpt now it may go [[tokens:1]]')
    await eventually(lambda: room.recent[-1].body == ''.join(numbered_tokens(1)) and not room.replies.in_progress)


async def test_the_rooms_message_window_is_a_minute(user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limits, 'time', SimpleNamespace(monotonic=lambda: clock[0]))
    room.limits.room_message_rate.count = 3  # the room's cap made small; its window is the one the app made
    await open_room(user)
    with user:
        box = user.find(marker='input').elements.pop()
    for number in range(3):  # 10.1 s apart: the writer's own 10 s window never refuses
        await ask(user, f'message {number}')
        await eventually(lambda number=number: len(room.recent) == number + 1)
        clock[0] += 10.1
    clock[0] = 1055.0
    await ask(user, 'one too many')
    await eventually(lambda: 'at most 3 messages a minute' in (box.error or ''))
    assert 'Try again in 5 s' in (box.error or '')  # a minute after the first message
    clock[0] = 1060.1
    box.value = ''
    await ask(user, 'now it may go')
    await eventually(lambda: room.recent[-1].body == 'now it may go')


async def test_the_rooms_question_window_is_a_minute(user: User, room: Room, fake_openai: FakeOpenAI,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole room's questions are counted in the database (every instance's): by the replies' created_at."""
    monkeypatch.setattr(room.limits, 'settings', replace(room.limits.settings, room_gpt_per_minute=2))
    clock = [1000.0]
    monkeypatch.setattr(limits, 'time', SimpleNamespace(monotonic=lambda: clock[0]))  # the writer's own windows
    await open_room(user)
    with user:
        box = user.find(marker='input').elements.pop()
    for number in range(2):
        await ask(user, f'@gpt question {number} [[tokens:1]]')
        await eventually(lambda number=number: len(replies(room)) == number + 1 and not room.replies.in_progress)
        clock[0] += 60.1  # the writer's own question window never refuses
    asked_at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # both replies, as if begun at the same moment
    for reply in replies(room):
        await room.store.save(reply.id, created_at=asked_at)  # type: ignore[arg-type]
    monkeypatch.setattr(limits, 'utc_now', lambda: asked_at + timedelta(seconds=59.9))
    await ask(user, '@gpt one more [[tokens:1]]')
    await eventually(lambda: 'at most 2 questions a minute from the whole room' in (box.error or ''))
    clock[0] += 60.1
    monkeypatch.setattr(limits, 'utc_now', lambda: asked_at + timedelta(seconds=60.1))
    box.value = ''
    await ask(user, '@gpt now it may go [[tokens:1]]')
    await eventually(lambda: len(replies(room)) == 3 and not room.replies.in_progress)


async def test_people_asking_in_the_same_moment_get_the_rooms_rate_exactly(
        create_user: Callable[[], User], room: Room, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Questions sent together are checked together (none waits for another's database count), yet in the order they
    came: the first three go, the others are told why, not all refused for each other nor all let through."""
    monkeypatch.setattr(room.limits, 'settings', replace(room.limits.settings, room_gpt_per_minute=3))
    tabs = [create_user() for _ in range(6)]
    for tab in tabs:
        await open_room(tab)
    for number, tab in enumerate(tabs):  # six people pressing Enter in the same moment
        await ask(tab, f'@gpt number {number} [[tokens:1]]')

    def refused(tab: User) -> bool:
        with tab:
            return 'at most 3 questions a minute from the whole room' in (tab.find(marker='input').elements.pop().error
                                                                           or '')
    await eventually(lambda: sum(map(refused, tabs)) == 3, message='not three refusals')
    await eventually(lambda: len(replies(room)) == 3 and not room.replies.in_progress and not room.limits.reserved)
    assert [refused(tab) for tab in tabs] == [False] * 3 + [True] * 3
    assert len(fake_openai.requests) == 3


async def test_the_rename_window_is_a_minute(user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(limits, 'time', SimpleNamespace(monotonic=lambda: clock[0]))
    await open_room(user)
    for number in range(room.limits.rename_rate.count):
        await rename(user, f'Name {number}')
        await eventually(lambda number=number: my_name(user) == f'Name {number}')
        clock[0] += 1
    clock[0] = 1055.0
    await rename(user, 'One too many')
    with user:
        box = user.find(marker='name-input').elements.pop()
    await eventually(lambda: 'Names change at most 5 times a minute: try again in 5 s' in (box.error or ''))
    assert my_name(user) == 'Name 4'
    clock[0] = 1060.1
    await rename(user, 'Now it may go')
    await eventually(lambda: my_name(user) == 'Now it may go')


async def test_a_person_with_two_tabs_stays_listed_until_the_last_closes(create_user: Callable[[], User],
                                                                        room: Room) -> None:
    watcher, twice = create_user(), create_user()
    await open_room(watcher)
    await open_room(twice)
    first_client = twice.client
    await open_room(twice)  # the same tab loaded again (a duplicated tab keeps the identity too): two clients
    assert first_client is not None and twice.client is not None and first_client is not twice.client
    name = my_name(twice)
    people = room.presence.people
    assert len(people) == 2 and len(next(person for person in people.values() if person.name == name).tabs) == 2
    first_client.delete()
    newcomer = create_user()  # news reaches a tab in order: once the watcher lists the newcomer, it has seen the close
    await open_room(newcomer)
    await eventually(lambda: my_name(newcomer) in people_listed(watcher))
    assert name in people_listed(watcher)  # still here, in its other tab
    twice.client.delete()
    await eventually(lambda: name not in people_listed(watcher))
    await watcher.should_see('Here now (2)', retries=50)


async def test_a_crowd_is_summed_up_past_thirty_people(create_user: Callable[[], User], room: Room) -> None:
    tabs = [create_user() for _ in range(33)]
    for tab in tabs:
        await open_room(tab)
    for tab in (tabs[0], tabs[-1]):  # the first tab's rows came one by one; the last one's, with its page
        await tab.should_see('Here now (33)', retries=50)
        await tab.should_see('and 3 more')
        assert len(people_listed(tab)) == 30
    assert people_listed(tabs[-1])[0] == my_name(tabs[-1])  # oneself first


async def test_a_new_name_survives_a_reload(user: User, room: Room) -> None:
    await open_room(user)
    await rename(user, 'Ada Lovelace')
    await eventually(lambda: my_name(user) == 'Ada Lovelace')
    await open_room(user)  # the same tab, loaded again
    assert my_name(user) == 'Ada Lovelace'


def count_refused(room: Room) -> list[str]:
    """The status of each save the database refused from now on (a flush: streaming; the final save: how it ended)."""
    refused: list[str] = []
    save = room.store.save

    def counted_save(message_id, **changes):  # type: ignore[no-untyped-def]
        saving = save(message_id, **changes)
        saving.add_done_callback(lambda done: done.cancelled() or not done.exception()
                                 or refused.append(changes.get('status', '')))
        return saving
    room.store.save = counted_save  # type: ignore[method-assign]
    return refused


@pytest.mark.parametrize('failing', ['the question', 'the reply itself', 'the text so far', 'the end'])
async def test_a_database_that_refuses_a_replys_writes_leaves_no_one_locked_out(
        user: User, room: Room, fake_openai: FakeOpenAI, failing: str, caplog: pytest.LogCaptureFixture) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(40), delay=0.02)
    await open_room(user)
    original_add, original_save = room.store.add, room.store.save
    if failing in ('the question', 'the reply itself'):
        async def add(message):  # type: ignore[no-untyped-def]
            if message.kind == ('bot' if failing == 'the reply itself' else 'user'):
                raise sqlite3.OperationalError('attempt to write a readonly database')
            return await original_add(message)
        room.store.add = add  # type: ignore[method-assign]
    undo = None
    await ask(user, '@gpt write something')
    if failing == 'the text so far':
        await eventually(lambda: room.replies.in_progress)
        undo = refuse_writes(room, 'query_only=ON')  # the saves while it streams fail
    elif failing == 'the end':
        await eventually(lambda: room.replies.in_progress)
        def save(message_id, **changes):  # type: ignore[no-untyped-def]
            if changes['status'] == Status.STREAMING:
                return original_save(message_id, **changes)
            refused = asyncio.get_running_loop().create_future()  # the final save only
            refused.set_exception(sqlite3.OperationalError('attempt to write a readonly database'))
            return refused
        room.store.save = save  # type: ignore[method-assign]
    refused_saves = count_refused(room)
    with user:
        box = user.find(marker='input').elements.pop()
    if failing == 'the question':
        await eventually(lambda: 'could not be saved' in (box.error or ''))
        assert box.value == '@gpt write something' and not replies(room)  # kept in the box; no reply began
    elif failing == 'the reply itself':
        await eventually(lambda: 'could not start a reply' in (box.error or ''))
    else:
        await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress, 10)
        assert replies(room)[0].status == Status.DONE and replies(room)[0].body == ''.join(numbered_tokens(40))
        refused_status = Status.STREAMING if failing == 'the text so far' else Status.DONE
        await eventually(lambda: refused_status in refused_saves, 2, f'no save was refused: {refused_saves}')  # (a
        # refusal is told by a callback, which may come a turn after the reply's end)
    if undo:
        undo()
    room.store.add, room.store.save = original_add, original_save  # type: ignore[method-assign]
    caplog.clear()  # the failures were logged, as they should be
    box.value = ''
    await ask(user, '@gpt and again? [[tokens:3]]')  # the asker was not left holding a pending question
    await eventually(lambda: any(m.body == ''.join(numbered_tokens(3)) for m in replies(room)), 10)


class ShortSleeps:
    """final_saves.py's asyncio, its sleeps a hundred times shorter: the retries (1, 5, 30, 120 s) come in
    milliseconds. Everything else is asyncio's own."""

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float) -> None:
        await asyncio.sleep(delay / 100)


def refuse_final_saves(room: Room, monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """The database refuses a reply's final save (its end, and each retry) `times` times, then takes it; the text
    so far and the prompt's bound are saved as usual. Returns what became of each final save."""
    attempts: list[str] = []
    save = room.store.save

    def refusing(message_id: int, **changes: object) -> asyncio.Future[None]:
        if changes.get('status', Status.STREAMING) == Status.STREAMING:
            return save(message_id, **changes)
        if len(attempts) >= times:
            attempts.append('saved')
            return save(message_id, **changes)
        attempts.append('refused')
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(sqlite3.OperationalError('database or disk is full'))
        return refused
    monkeypatch.setattr(room.store, 'save', refusing)
    return attempts


async def test_a_final_save_the_database_refused_is_tried_again(user: User, room: Room, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Else the stored reply would stay 'streaming' (and the daily budget hold its worst case) all day."""
    monkeypatch.setattr(final_saves_module, 'asyncio', ShortSleeps())
    attempts = refuse_final_saves(room, monkeypatch, times=2)  # its end, and the first retry
    await open_room(user)
    await ask(user, '@gpt write something [[tokens:3]]')
    await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress)
    await eventually(lambda: not room.replies.final_saves.tasks, message='the retries did not end')
    stored = await room.store.get(replies(room)[0].id)  # type: ignore[arg-type]
    assert stored and stored.status == Status.DONE and stored.body == ''.join(numbered_tokens(3))
    assert attempts == ['refused', 'refused', 'saved']
    assert 'could not save the end of reply' in caplog.text
    caplog.clear()  # the refusal was logged, as it should be


async def test_the_shutdown_cancels_the_final_saves_still_to_be_tried(
        user: User, room: Room, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The shutdown does not wait for them (up to minutes), nor leave them to write to a closed database: the
    reply left 'streaming' is ended as interrupted at the next start."""
    attempts = refuse_final_saves(room, monkeypatch, times=99)
    await open_room(user)
    await ask(user, '@gpt write something [[tokens:3]]')
    await eventually(lambda: room.replies.final_saves.tasks, message='no retry of the refused end')
    (retry,) = room.replies.final_saves.tasks  # its first try is a second away
    await room.replies.interrupt_all()
    await eventually(retry.done, 0.5, 'the retry was not cancelled')
    assert retry.cancelled() and attempts == ['refused'] and not room.replies.final_saves.tasks
    caplog.clear()  # the refusal was logged, as it should be


async def test_a_reply_the_shutdown_ends_leaves_no_retry_behind(user: User, room: Room, fake_openai: FakeOpenAI,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A reply still written at the shutdown, whose end the database refuses too: its retry would outlive the
    store (closed next), trying to write for minutes. It stays 'streaming'; the next start ends it."""
    fake_openai.script = Script(tokens=numbered_tokens(100), delay=0.05)
    attempts = refuse_final_saves(room, monkeypatch, times=99)
    await open_room(user)
    await ask(user, '@gpt write for a while')
    await eventually(lambda: replies(room) and replies(room)[0].status == Status.STREAMING)
    await room.replies.interrupt_all()
    assert replies(room)[0].status == Status.INTERRUPTED and attempts == ['refused']
    assert all(retry.cancelling() or retry.done() for retry in room.replies.final_saves.tasks), 'a retry was left'
    caplog.clear()  # the refusal was logged, as it should be


def room_of_an_earlier_run(db: Path) -> None:
    """One message, in the table an early version made (the app upgrades the table it finds)."""
    with sqlite3.connect(db) as connection:
        connection.execute('CREATE TABLE message (id INTEGER PRIMARY KEY, kind VARCHAR(20), author VARCHAR, '
                           'author_id VARCHAR, body VARCHAR, status VARCHAR(20), reply_to INTEGER, error VARCHAR, '
                           'model VARCHAR, prompt_tokens INTEGER, completion_tokens INTEGER, first_token_ms INTEGER, '
                           'duration_ms INTEGER, created_at DATETIME, updated_at DATETIME)')
        connection.execute("INSERT INTO message (kind, author, author_id, body, status, created_at, updated_at) "
                           "VALUES ('user', 'Ian', 'ian', 'old', 'done', '2026-01-01', '2026-01-01')")


def test_reset_with_yes_deletes_every_message(tmp_path: Path) -> None:
    db = tmp_path / 'chat.db'
    room_of_an_earlier_run(db)
    command = [sys.executable, str(ROOT / 'main.py'), '--no-browser', '--no-seed', '--provider', 'demo', '--db',
               str(db), '--reset', '--yes', '--port', str(free_port())]
    environment = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)}
    with subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as app:
        deadline = threading.Timer(60, app.kill)  # a line that never comes fails the test rather than hang it
        deadline.start()
        try:
            for line in app.stdout:  # type: ignore[union-attr]
                if '--reset: deleted' in line:
                    assert 'deleted 1 message' in line
                    break
            else:
                pytest.fail('the app ended without saying what --reset deleted')
        finally:
            deadline.cancel()
            app.terminate()
    with sqlite3.connect(db) as connection:
        assert connection.execute('SELECT count(*) FROM message').fetchone() == (0,)


@pytest.mark.parametrize(('answer', 'left'), [('no', 1), ('yes', 0)])
def test_reset_on_a_terminal_deletes_only_after_a_yes(tmp_path: Path, answer: str, left: int) -> None:
    """`python main.py --reset` on a real terminal (a pseudo-terminal here): "no" keeps the room and ends the app
    with what it did; "yes" deletes every message."""
    db = tmp_path / 'chat.db'
    room_of_an_earlier_run(db)
    command = [sys.executable, str(ROOT / 'main.py'), '--no-browser', '--no-seed', '--provider', 'demo', '--db',
               str(db), '--reset', '--port', str(free_port())]
    terminal, its_other_end = pty.openpty()
    with subprocess.Popen(command, cwd=tmp_path, env={'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)},
                          stdin=its_other_end, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as app:
        os.write(terminal, f'{answer}\n'.encode())  # typed ahead: the terminal holds it until the question reads it
        deadline = threading.Timer(60, app.kill)
        deadline.start()
        try:
            output = ''
            for line in app.stdout:  # type: ignore[union-attr]
                output += line
                if '--reset: deleted' in line:
                    break
        finally:
            deadline.cancel()
            app.terminate()
            os.close(terminal)
            os.close(its_other_end)
    assert 'Type "yes" to confirm' in output
    assert ('Nothing was deleted.' in output) == (answer == 'no'), output
    with sqlite3.connect(db) as connection:
        assert connection.execute('SELECT count(*) FROM message').fetchone() == (left,)


def test_reset_asks_on_a_terminal_and_takes_only_yes(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys.stdin, 'isatty', lambda: True)
    settings = parse_settings(['--reset', '--db', 'postgresql://chat:hunter2@db.example/chat'])
    asked: list[str] = []
    for answer, expected in (('yes', True), (' YES ', True), ('y', False), ('', False)):
        monkeypatch.setattr('builtins.input', lambda prompt, answer=answer: asked.append(prompt) or answer)
        assert confirm_reset(settings) is expected
    assert asked and all('hunter2' not in prompt and 'db.example' in prompt for prompt in asked)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_clients_that_never_connect_do_not_count_as_people(user: User, room: Room,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await open_room(user)
    handled = count_connected_returns(monkeypatch)
    for _ in range(3):
        await user.http_client.get('/')  # curl, a link preview: a page, no socket
    Client.prune_instances(client_age_threshold=0)
    await eventually(lambda: len(handled) == 3)  # each page's handler has resumed after its client went, and ended
    assert len(room.presence.people) == 1
