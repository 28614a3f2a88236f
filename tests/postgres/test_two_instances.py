"""Two app instances as real processes on one PostgreSQL room (chat/instances/relay.py): a tab on each, watched through
NiceGUI's own socket protocol (bench/socket_tab.py), against the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import Session, select

from bench.socket_tab import SocketTab, acknowledge_forever
from chat.database import create_database_engine
from chat.instances.relay import LEASE_SECONDS, SWEEP_EVERY
from chat.markdown import render_markdown
from chat.models import Kind, Message, Status

from ..browser import AppProcess, child_environment
from ..fake_openai import FakeOpenAI, numbered_tokens


def instance(workdir: Path, db_url: str, model_url: str, *flags: str) -> AppProcess:
    """`python main.py` on a port of its own, on the shared database (a later --db wins over AppProcess's own)."""
    return AppProcess(workdir, ['--db', db_url, '--provider', 'openai', '--retries', '0', *flags],
                      env=child_environment(OPENAI_API_KEY='sk-test', OPENAI_BASE_URL=model_url))


@pytest.fixture
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def instances(postgres_url: str, model_server: FakeOpenAI, tmp_path: Path) -> Iterator[tuple[AppProcess, AppProcess]]:
    pair = tuple(instance(tmp_path / name, postgres_url, model_server.base_url) for name in ('a', 'b'))
    try:
        for app in pair:
            app.start()
        yield pair  # type: ignore[misc]
    finally:
        for app in pair:
            app.stop()


@asynccontextmanager
async def tabs_on(*instances: AppProcess) -> AsyncIterator[list[SocketTab]]:
    async with aiohttp.ClientSession() as session:
        tabs = [SocketTab(session, instance.url, keep_frames=True) for instance in instances]
        acknowledging = asyncio.create_task(acknowledge_forever(tabs))
        try:
            for tab in tabs:
                await tab.open()
                await asyncio.wait_for(tab.ready.wait(), 20)
            yield tabs
        finally:
            acknowledging.cancel()
            await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)


def streamed_text(tab: SocketTab, reply_id: int) -> str:
    """The reply's text as this tab received it in `grew` messages alone, put together by offset."""
    return shown_text(tab, reply_id, from_start=True)


def pieces_of(tab: SocketTab, reply_id: int) -> list[tuple[int, str]]:
    """The (offset, text) pieces of a reply this tab received in `grew` messages, in order."""
    return [(piece[0], piece[1]) for frame in tab.frames or [] if frame.startswith('42["grew",')
            and (piece := json.loads(frame[2:])[1].get(str(reply_id)))]


def shown_text(tab: SocketTab, reply_id: int, *, from_start: bool = False) -> str:
    """What the tab shows of a reply while it streams, as reply_text.js puts it together: the text its element was
    made with (or nothing, `from_start`), then each piece by its offset, including pieces that arrived before the
    element (kept early). These replies are one paragraph: no block of theirs is finished before the end, so the
    element's text so far is its `tail`, from offset 0."""
    initial: str | None = '' if from_start else None
    for frame in tab.frames or []:
        if frame.startswith('42["update",') and initial is None:  # the reply's streaming element, as first made
            initial = next((element['props']['tail'] for element in json.loads(frame[2:])[1].values()
                            if isinstance(element, dict) and element.get('props', {}).get('message-id') == reply_id),
                           None)
    text = initial or ''
    for offset, piece in pieces_of(tab, reply_id):
        if offset <= len(text):
            text += piece[len(text) - offset:]
    return text


async def followed_to_the_end(tab: SocketTab, reply_id: int, body: str,
                              shown: Callable[[SocketTab, int], str]) -> None:
    """Every piece the tab got fits the stored text at its offset, and together they make all of it (the last may
    still be on its way when the test sees the end stored). Unless the server dropped the tab's socket for a
    moment (seen on this loaded 2-core machine, in CI too): then the tab heals as a browser's does."""
    assert all(body[at:at + len(piece)] == piece for at, piece in pieces_of(tab, reply_id))
    if tab.drops:
        await healed_after_a_drop(tab, reply_id, body)
    else:
        await until(lambda: shown(tab, reply_id) == body, 5, f'the tab shows {shown(tab, reply_id)[-40:]!r}')


async def healed_after_a_drop(tab: SocketTab, reply_id: int, body: str) -> None:
    """A dropped socket loses the pieces sent while it was down, by design: they go straight to the socket, not
    through NiceGUI's outbox, which re-sends what a reconnecting tab missed. The reply's end does go through the
    outbox (`finish`, with the reply's length), and reply_text.js, seeing it lacks text, asks for the reply so far
    (`resync`; the browser may ask sooner, at the first gap). These tabs run no JavaScript: the test asks for it."""
    def ended() -> tuple[str, dict] | None:  # the reply's text element, once the tab knows the reply ended
        found = reply_element(tab, reply_id)
        return found if found and (not found[1]['props']['live'] or method_calls(tab, found[0], 'finish')) else None

    element_id, element = await until(ended, 10, 'after its socket was dropped, the tab was not told the reply ended')
    if not element['props']['live']:  # the server had forgotten the tab: it loaded the page anew, after the end
        state = element['props']
    else:
        state = await ask_for_the_reply_so_far(tab, element_id, element)
    assert (state['html'], state['done'], state['tail']) == (render_markdown(body), len(body), '')


async def ask_for_the_reply_so_far(tab: SocketTab, element_id: str, element: dict) -> dict:
    """What reply_text.js does when it sees it missed text: emit `resync`; the server's answer is `reset`."""
    answered = len(method_calls(tab, element_id, 'reset'))
    resync = next(event['listener_id'] for event in element['events'] if event['type'] == 'resync')
    await tab._emit('event', {'id': int(element_id), 'client_id': tab.client_id, 'listener_id': resync, 'args': []})
    answers = await until(lambda: method_calls(tab, element_id, 'reset')[answered:], 5,
                          'the tab asked for the reply so far and got no answer')
    return answers[0][0]


def reply_element(tab: SocketTab, reply_id: int) -> tuple[str, dict] | None:
    """The reply's text element (reply_text.js) as this tab was last sent it: (element id, element). A tab that
    loaded the page anew has a new one."""
    found = None
    for frame in tab.frames or []:
        if frame.startswith('42["update",'):
            found = next(((key, element) for key, element in json.loads(frame[2:])[1].items()
                          if isinstance(element, dict) and element.get('props', {}).get('message-id') == reply_id),
                         found)
    return found


def method_calls(tab: SocketTab, element_id: str, method: str) -> list[list]:
    """The arguments of each call of the element's JavaScript method the server made on this tab (run_method)."""
    call = f'return runMethod({element_id}, {json.dumps(method)}, '
    codes = [json.loads(frame[2:])[1]['code'] for frame in tab.frames or [] if frame.startswith('42["run_javascript",')]
    return [json.loads(code[len(call):-1]) for code in codes if code.startswith(call)]


def page_elements(tab: SocketTab) -> dict[str, dict]:
    """Every element this tab was sent, in its latest state (NiceGUI's `update` messages: element id -> element)."""
    elements: dict[str, dict] = {}
    for frame in tab.frames or []:
        if frame.startswith('42["update",'):
            elements.update({key: value for key, value in json.loads(frame[2:])[1].items() if key != '_id'})
    return elements


def stop_button(tab: SocketTab, reply_id: int) -> tuple[str, str] | None:
    """The Stop button in the reply's bubble on this tab, as (element id, click listener id), once it has arrived."""
    elements = page_elements(tab)
    waiting = [key for key, element in elements.items()
               if element and element.get('props', {}).get('data-message-id') == str(reply_id)]
    while waiting:
        key = waiting.pop()
        element = elements.get(key) or {}
        click = next((event for event in element.get('events', []) if event['type'] == 'click'), None)
        if click and element.get('props', {}).get('label') == 'Stop':
            return key, click['listener_id']
        waiting += [str(child) for child in element.get('children', [])]
    return None


async def press_stop(tab: SocketTab, reply_id: int) -> None:
    """Click the Stop button in the reply's bubble, as the browser reports a click."""
    button = await until(lambda: stop_button(tab, reply_id), 5, 'no Stop button reached the tab')
    await tab._emit('event', {'id': int(button[0]), 'client_id': tab.client_id, 'listener_id': button[1],
                              'args': ['{}']})


def stored(db_url: str) -> list[Message]:
    engine = create_database_engine(db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Message).order_by(Message.id)))  # type: ignore[arg-type]
    finally:
        engine.dispose()


async def until(condition, timeout: float, message: str):  # type: ignore[no-untyped-def]
    """Wait for `condition()`, run on a thread: it may read the database, and this loop must keep answering the
    tabs' pings (a loop that stalls for 2 s gets its sockets dropped by the server)."""
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(condition)):
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.1)
    return result


async def test_a_message_and_a_reply_streamed_by_one_instance_reach_the_other_live(
        instances: tuple[AppProcess, AppProcess], postgres_url: str, model_server: FakeOpenAI) -> None:
    async with tabs_on(*instances) as (tab_a, tab_b):
        await tab_a.ask('hello from the first instance')
        await until(lambda: any('hello from the first instance' in frame for frame in tab_b.frames or []), 10,
                    'the message did not reach the tab of the other instance')

        await tab_a.ask('@gpt count for us [[tokens:150]] [[delay:0.02]]')
        reply = await until(lambda: next((m for m in stored(postgres_url) if m.kind == Kind.BOT), None), 10,
                            'no reply was stored')
        await until(lambda: len(streamed_text(tab_b, reply.id)) > 20, 10,
                    'the reply did not grow in the other instance\'s tab')
        assert stored(postgres_url)[-1].status.in_progress  # it grew there while it was still being written
        done = await until(lambda: next((m for m in stored(postgres_url) if m.id == reply.id
                                         and not m.status.in_progress), None), 20, 'the reply did not end')
        assert done.status == Status.DONE
        assert done.body == ''.join(numbered_tokens(150))
        # Every piece, live, in order (a gap would never close: the tab would ask for the text instead). The last
        # pieces may still be on their way to B's tab when the test sees the end stored: wait for them a little.
        for tab in (tab_a, tab_b):
            await followed_to_the_end(tab, reply.id, done.body, streamed_text)


async def test_an_instance_started_mid_reply_shows_it_to_its_tabs_and_follows_it_to_the_end(
        postgres_url: str, model_server: FakeOpenAI, instances: tuple[AppProcess, AppProcess], tmp_path: Path) -> None:
    first, _ = instances
    async with tabs_on(first) as (tab_a,):
        await tab_a.ask('@gpt a long one [[tokens:400]] [[delay:0.02]]')
        reply = await until(lambda: next((m for m in stored(postgres_url) if m.kind == Kind.BOT), None), 10,
                            'no reply was stored')
        await until(lambda: len(streamed_text(tab_a, reply.id)) > 100, 10, 'the reply did not start')
        late = instance(tmp_path / 'late', postgres_url, model_server.base_url)  # as if restarted
        try:
            await asyncio.to_thread(late.start)  # it waits for the port: not on the loop that answers pings
            async with tabs_on(late) as (tab_late,):
                assert stored(postgres_url)[-1].status.in_progress, 'the reply ended before the late tab opened'
                done = await until(lambda: next((m for m in stored(postgres_url) if m.id == reply.id
                                                 and not m.status.in_progress), None), 20, 'the reply did not end')
                assert done.body == ''.join(numbered_tokens(400))
                # It started from the text so far and followed the rest live, without a gap or a repeat.
                await followed_to_the_end(tab_late, reply.id, done.body, shown_text)
        finally:
            late.stop()


async def test_a_tab_whose_socket_dropped_mid_reply_asks_for_what_it_missed_and_is_told_the_end(
        instances: tuple[AppProcess, AppProcess], postgres_url: str) -> None:
    """The drop `followed_to_the_end` allows for, made on purpose: B's tab loses its socket while A's reply streams."""
    async with tabs_on(*instances) as (tab_a, tab_b):
        await tab_a.ask('@gpt a long one [[tokens:300]] [[delay:0.02]]')
        reply = await until(lambda: next((m for m in stored(postgres_url) if m.kind == Kind.BOT), None), 10,
                            'no reply was stored')
        await until(lambda: len(streamed_text(tab_b, reply.id)) > 20, 10, 'the reply did not start')
        await tab_b.ws.close()  # the server sees what it sees when it drops a tab; the tab reconnects a second later
        got_before = len(pieces_of(tab_b, reply.id))

        def gap() -> bool:  # a piece that starts past what the tab has: it missed some
            return any(at > len(streamed_text(tab_b, reply.id)) for at, _ in pieces_of(tab_b, reply.id)[got_before:])

        await until(gap, 10, 'no piece came after the reconnection, or none was missed')
        element_id, element = reply_element(tab_b, reply.id)  # type: ignore[misc]
        so_far = await ask_for_the_reply_so_far(tab_b, element_id, element)  # as the browser does, at once
        done = await until(lambda: next((m for m in stored(postgres_url) if m.id == reply.id
                                         and not m.status.in_progress), None), 20, 'the reply did not end')
        text_so_far = so_far['tail']  # one paragraph: no block is finished before the end
        assert so_far['done'] == 0 and len(text_so_far) > len(streamed_text(tab_b, reply.id))
        assert done.body.startswith(text_so_far)
        assert tab_b.drops and streamed_text(tab_b, reply.id) != done.body  # the live pieces have a hole
        await healed_after_a_drop(tab_b, reply.id, done.body)  # and the tab is told the end, and gets it whole


async def test_stop_pressed_on_the_other_instance_stops_the_reply(
        instances: tuple[AppProcess, AppProcess], postgres_url: str, model_server: FakeOpenAI) -> None:
    async with tabs_on(*instances) as (tab_a, tab_b):
        await tab_a.ask('@gpt a long one [[tokens:2000]] [[delay:0.02]]')
        reply = await until(lambda: next((m for m in stored(postgres_url) if m.kind == Kind.BOT), None), 10,
                            'no reply was stored')
        await until(lambda: len(streamed_text(tab_b, reply.id)) > 20, 10, 'the reply did not start')
        await press_stop(tab_b, reply.id)
        ended = await until(lambda: next((m for m in stored(postgres_url) if m.id == reply.id
                                          and not m.status.in_progress), None), 5, 'Stop from B did not end it')
        assert ended.status == Status.STOPPED
        await until(lambda: model_server.open_streams == 0, 3, 'the request to the model stayed open')
        assert len(model_server.sent) < 2000, 'the model finished its whole reply: Stop did not reach it'
        assert ''.join(numbered_tokens(2000)).startswith(ended.body)
        await until(lambda: '"data-status":"stopped"' in ''.join(tab_b.frames or []), 5, 'B\'s tab was not told')


async def test_a_reply_whose_instance_dies_is_marked_interrupted_by_the_other(
        instances: tuple[AppProcess, AppProcess], postgres_url: str) -> None:
    first, second = instances
    async with tabs_on(first, second) as (tab_a, tab_b):
        await tab_a.ask('@gpt a long one [[tokens:2000]] [[delay:0.02]]')
        reply = await until(lambda: next((m for m in stored(postgres_url) if m.kind == Kind.BOT), None), 10,
                            'no reply was stored')
        await until(lambda: len(streamed_text(tab_b, reply.id)) > 20, 10, 'the reply did not start')
        await until(lambda: next(m for m in stored(postgres_url) if m.id == reply.id).body, 5, 'no text saved')
        first.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        killed_at = time.monotonic()
        ended = await until(lambda: next((m for m in stored(postgres_url) if m.id == reply.id
                                          and not m.status.in_progress), None),
                            LEASE_SECONDS + SWEEP_EVERY + 5, 'the other instance never ended the orphaned reply')
        assert ended.status == Status.INTERRUPTED
        assert time.monotonic() - killed_at <= LEASE_SECONDS + SWEEP_EVERY + 5
        assert ended.body and ''.join(numbered_tokens(2000)).startswith(ended.body)  # its text up to the last flush
        await until(lambda: any('"data-status":"interrupted"' in frame for frame in tab_b.frames or []), 5,
                    'the other instance\'s tab was not told')


async def test_a_reply_in_progress_on_one_instance_holds_the_budget_on_the_other(
        postgres_url: str, model_server: FakeOpenAI, tmp_path: Path) -> None:
    """A reply being written may cost its prompt and max_tokens (here more than the whole budget): the other instance
    sees it in the database, and takes no question until it has ended."""
    flags = ('--daily-token-budget', '1000', '--max-tokens', '1000')
    pair = [instance(tmp_path / name, postgres_url, model_server.base_url, *flags) for name in ('a', 'b')]
    try:
        for app in pair:
            app.start()
        async with tabs_on(*pair) as (tab_a, tab_b):
            await tab_a.ask('@gpt a long one [[tokens:100]] [[delay:0.1]]')
            await until(lambda: any(m.kind == Kind.BOT and m.status == Status.STREAMING for m in stored(postgres_url)),
                        10, 'the first reply did not start')
            await tab_b.ask('@gpt and one from the other instance?')
            await until(lambda: any('may be spent by the replies being written' in frame
                                    for frame in tab_b.frames or []), 10, 'the other instance did not refuse')
            assert len(model_server.requests) == 1, 'a second request reached the provider'
            assert len([m for m in stored(postgres_url) if m.kind == Kind.BOT]) == 1
    finally:
        for app in pair:
            app.stop()


async def test_two_instances_share_the_days_token_budget(postgres_url: str, model_server: FakeOpenAI,
                                                        tmp_path: Path) -> None:
    pair = [instance(tmp_path / name, postgres_url, model_server.base_url, '--daily-token-budget', '100')
            for name in ('a', 'b')]
    try:
        for app in pair:
            app.start()
        async with tabs_on(*pair) as (tab_a, tab_b):
            await tab_a.ask('@gpt spend the day [[tokens:150]]')  # the reply that crosses the line finishes
            await until(lambda: any(m.kind == Kind.BOT and m.status == Status.DONE for m in stored(postgres_url)), 15,
                        'the first reply did not finish')
            requests = len(model_server.requests)
            await tab_b.ask('@gpt and one from the other instance?')
            await until(lambda: any("Today's budget for the bots, 100 tokens, is spent" in frame
                                    for frame in tab_b.frames or []), 10, 'the other instance did not refuse')
            assert len(model_server.requests) == requests, 'a request reached the provider past the budget'
            assert len([m for m in stored(postgres_url) if m.kind == Kind.BOT]) == 1
    finally:
        for app in pair:
            app.stop()


async def test_two_bots_replies_to_one_message_both_reach_the_other_instance_live(
        postgres_url: str, model_server: FakeOpenAI, tmp_path: Path) -> None:
    bots = tmp_path / 'bots.toml'
    bots.write_text('[[bots]]\nname = "critic"\nprovider = "openai"\n[[bots]]\nname = "helper"\nprovider = "openai"\n')
    pair = [instance(tmp_path / name, postgres_url, model_server.base_url, '--bots', str(bots)) for name in 'ab']

    def bot_replies() -> list[Message]:
        return [message for message in stored(postgres_url) if message.kind == Kind.BOT]

    def ended() -> list[Message] | None:
        replies = bot_replies()
        return replies if not any(reply.status.in_progress for reply in replies) else None
    try:
        for app in pair:
            app.start()
        async with tabs_on(*pair) as (tab_a, tab_b):
            await tab_a.ask('@critic and @helper, count for us [[tokens:300]] [[delay:0.02]]')
            both = await until(lambda: len(replies := bot_replies()) == 2 and replies, 10, 'not two replies')
            await until(lambda: all(len(streamed_text(tab_b, reply.id)) > 20 for reply in both), 10,  # type: ignore[arg-type]
                        'the two replies did not both grow in the other instance\'s tab')
            assert all(reply.status.in_progress for reply in bot_replies())  # they grew there while being written
            done = await until(ended, 20, 'the replies did not end')
            assert sorted((m.author, m.status, m.body) for m in done) == [
                (name, Status.DONE, ''.join(numbered_tokens(300))) for name in ('critic', 'helper')]
            for tab in (tab_a, tab_b):
                for reply in done:
                    await followed_to_the_end(tab, reply.id, reply.body, streamed_text)  # type: ignore[arg-type]
    finally:
        for app in pair:
            app.stop()
