"""The room with simulated tabs: names, live messages, reloads, refusals, persistence and presence."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nicegui import Client, ElementFilter, app, ui
from nicegui.testing import User, UserInteraction

from chat.models import Message
from chat.room import Room
from chat.store import Store

from .conftest import count_connected_returns, eventually, open_room, people_listed


def my_name(user: User) -> str:
    with user:
        return user.find(marker='me').elements.pop().default_slot.children[1].text


def bubbles(user: User) -> list[ui.chat_message]:
    with user:
        return list(ElementFilter(kind=ui.chat_message))


def bubble_text(bubble: ui.chat_message) -> str:
    (body,) = [element for element in bubble.descendants() if 'message-body' in element.classes]
    return html.unescape(body.content.replace('<br />', '\n'))


def shown(user: User) -> list[tuple[str, str, bool]]:
    """Each bubble on this tab as (author, text, shown as mine)."""
    return [(bubble.props['name'], bubble_text(bubble), bubble.props['sent']) for bubble in bubbles(user)]


async def rename(user: User, name: str) -> None:
    user.find(marker='me').click()
    with user:
        user.find(marker='name-input').elements.pop().value = name
    user.find(marker='save-name').click()


async def send(user: User, text: str) -> None:
    user.find(marker='input').type(text)
    user.find(marker='send').click()


async def test_three_tabs_see_each_message_once_as_its_author(create_user: Callable[[], User], room: Room) -> None:
    tabs = [create_user() for _ in range(3)]
    for tab in tabs:
        await open_room(tab)
    names = [my_name(tab) for tab in tabs]
    assert len(set(names)) == 3, names

    await send(tabs[0], 'Hello from the first tab')
    for tab in tabs:
        await eventually(lambda tab=tab: len(bubbles(tab)) == 1)
    assert shown(tabs[0]) == [(names[0], 'Hello from the first tab', True)]
    assert shown(tabs[1]) == [(names[0], 'Hello from the first tab', False)]
    assert shown(tabs[2]) == [(names[0], 'Hello from the first tab', False)]
    with tabs[0]:
        assert tabs[0].find(marker='input').elements.pop().value == ''  # cleared once stored


async def test_the_message_box_says_how_to_ask_the_bot(user: User, room: Room) -> None:
    """With one bot (no bots file): its name to write, and whom it asks. (Several bots: the browser test.)"""
    await open_room(user)
    with user:
        (box,) = ElementFilter(marker='input')
        assert box.props.get('placeholder') == 'Message the room. Write @gpt to ask GPT.'


async def test_mine_is_decided_by_identity_not_by_name(create_user: Callable[[], User], room: Room) -> None:
    alice, twin = create_user(), create_user()
    await open_room(alice)
    await send(alice, 'Which of us wrote this?')
    await eventually(lambda: len(bubbles(alice)) == 1)
    name = my_name(alice)
    assert alice.client is not None
    alice.client.delete()  # Alice leaves; later someone else takes her name (while she is here, no one may)
    await open_room(twin)
    await rename(twin, name)
    await eventually(lambda: my_name(twin) == name)
    assert shown(twin) == [(name, 'Which of us wrote this?', False)]


async def test_a_reload_keeps_the_name_and_a_new_tab_gets_another(create_user: Callable[[], User], room: Room) -> None:
    tab = create_user()
    await open_room(tab)
    name = my_name(tab)
    await open_room(tab)  # the same browser tab (same tab id) loads the page again
    assert my_name(tab) == name
    newcomer = create_user()
    await open_room(newcomer)
    assert my_name(newcomer) != name


async def test_messages_are_stored_and_shown_after_a_restart(user: User, room: Room, db_path: Path) -> None:
    await open_room(user)
    await send(user, 'Remember me')
    await eventually(lambda: len(bubbles(user)) == 1)
    await room.close()  # the app stops...

    store = Store(f'sqlite:///{db_path}')  # ...and another process opens the same file
    await store.open()
    stored = await store.recent(10)
    await store.close()
    assert [(message.body, message.author) for message in stored] == [('Remember me', my_name(user))]


def write_earlier_messages(db_path: Path, count: int) -> list[str]:
    """A database written by an earlier run of the app, before this one starts; returns the messages' texts. (In a
    thread of its own: the caller may be inside an event loop, as Playwright's tests are.)"""
    bodies = [f'old message {index}' for index in range(count)]

    async def write() -> None:
        store = Store(f'sqlite:///{db_path}')
        await store.open()
        for body in bodies:
            await store.add(Message(author='Ian', author_id='earlier', body=body))
        await store.close()
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, write()).result()
    return bodies


@pytest.fixture
def earlier_messages(db_path: Path) -> list[str]:
    return write_earlier_messages(db_path, 150)[50:]  # the newest 100: what a tab opens on


async def test_a_tab_opens_on_the_newest_100_messages_oldest_first(earlier_messages: list[str], user: User) -> None:
    await open_room(user)
    assert [text for _, text, _ in shown(user)] == earlier_messages


async def test_empty_and_blank_messages_are_refused_quietly(user: User, room: Room) -> None:
    await open_room(user)
    answers: list[Message | None] = []
    post = room.post

    async def answered_post(person, text):  # type: ignore[no-untyped-def]
        answers.append(await post(person, text))
        return answers[-1]
    room.post = answered_post  # type: ignore[method-assign]
    for number, text in enumerate(['', '   ', '\n\t ']):
        with user:
            user.find(marker='input').elements.pop().value = text  # each blank as it is, not typed after the last
        user.find(marker='send').click()
        await eventually(lambda number=number: len(answers) == number + 1)  # the room has answered this one
    assert answers == [None, None, None]
    await user.should_not_see(kind=ui.chat_message)
    assert await room.store.count() == 0
    assert not user.notify.messages


async def test_a_double_press_sends_a_message_once(user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enter and a click on Send, or two clicks, before the first is stored: one message, not the same one twice."""
    await open_room(user)
    posted: list[str] = []
    post = room.post

    async def counted_post(person, text):  # type: ignore[no-untyped-def]
        posted.append(text)
        return await post(person, text)
    monkeypatch.setattr(room, 'post', counted_post)
    user.find(marker='input').type('hello once')
    user.find(marker='send').click()
    user.find(marker='send').click()  # its handler runs while the first is stored (a thread hop at least)
    await eventually(lambda: room.recent and user.find(marker='input').elements.pop().value == '')
    assert posted == ['hello once'] and [message.body for message in room.recent] == ['hello once']
    user.find(marker='input').type('and again')  # the tab sends again once the first is stored
    user.find(marker='send').click()
    await eventually(lambda: [message.body for message in room.recent] == ['hello once', 'and again'])


async def test_an_overlong_message_is_refused_with_a_notice_and_stays_in_the_box(user: User, room: Room) -> None:
    await open_room(user)
    text = 'x' * 4001
    await send(user, text)
    await eventually(lambda: user.notify.messages)
    assert 'limit is 4,000' in user.notify.messages[-1]
    with user:
        assert 'limit is 4,000' in user.find(marker='input').elements.pop().error
    with user:
        assert user.find(marker='input').elements.pop().value == text
    assert await room.store.count() == 0
    with user:
        user.find(marker='input').elements.pop().value = ''
    await send(user, 'y' * 4000)  # exactly at the limit is fine
    await eventually(lambda: len(bubbles(user)) == 1)


async def test_who_is_here_follows_tabs_opening_and_closing(create_user: Callable[[], User], room: Room) -> None:
    first, second = create_user(), create_user()
    await open_room(first)
    await open_room(second)
    await first.should_see('Here now (2)', retries=50)
    second_name = my_name(second)
    await eventually(lambda: second_name in people_listed(first))
    assert second.client is not None
    second.client.delete()  # the tab is closed (NiceGUI deletes its client once the socket is gone)
    await first.should_see('Here now (1)', retries=50)
    assert people_listed(first) == [my_name(first)]


async def test_subscriptions_are_released_when_200_tabs_close(create_user: Callable[[], User], room: Room) -> None:
    events = [room.added, room.changed, room.presence.changed]  # each tab listens to these
    before = [len(event.callbacks) for event in events]
    broadcast = app.state.reply_text_broadcast  # growing replies go to every tab at once, not through `room.grew`
    tabs = [create_user() for _ in range(200)]
    for tab in tabs:
        await open_room(tab)
    assert [len(event.callbacks) for event in events] == [count + 200 for count in before]
    assert len(broadcast.client_ids) == 200
    for tab in tabs:
        assert tab.client is not None
        tab.client.delete()
    assert [len(event.callbacks) for event in events] == before
    assert broadcast.client_ids == set()
    assert room.presence.people == {}


async def test_older_messages_load_on_demand(earlier_messages: list[str], user: User, room: Room) -> None:
    await open_room(user)
    assert len(bubbles(user)) == 100
    user.find(marker='older').click()
    looks: list[list[int]] = []  # the tab, looked at every millisecond while the page comes (built in slices)
    deadline = time.monotonic() + 5
    while not looks or len(looks[-1]) < 150:
        assert time.monotonic() < deadline, f'the older page did not come: {[len(look) for look in looks[-3:]]}'
        looks.append([int(text.split()[-1]) for _, text, _ in shown(user)])
        await asyncio.sleep(0.001)  # (sleep(0) here starves the page's handler)
    assert all(numbers == sorted(numbers) for numbers in looks), 'a look at the tab showed the messages out of order'
    assert looks[-1] == list(range(150))
    await user.should_not_see(marker='older')  # there is nothing older
    with user:  # and scrolling to the top again asks the database for nothing
        (scroller,) = [element for element in user.client.elements.values() if 'message-scroller' in element.classes]
    (listener,) = [listener for listener in scroller._event_listeners.values() if listener.type == 'scroll']
    message_list = listener.handler.__self__  # type: ignore[attr-defined]
    reads: list[object] = []
    recent = room.store.recent
    room.store.recent = lambda *args, **kwargs: reads.append(args) or recent(*args, **kwargs)  # type: ignore[method-assign]
    UserInteraction(user, {scroller}, None).trigger('scroll', {'top': True, 'bottom': False})
    await eventually(lambda: not message_list.at_bottom)  # the handler ran: it would have begun a load by now
    assert not message_list.loading_older and reads == []


async def test_a_page_request_that_never_opens_its_socket_leaves_no_error(
        user: User, room: Room, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """curl, a health check, a link preview or a tab closed at once: NiceGUI prunes its client after a minute."""
    await open_room(user)
    handled = count_connected_returns(monkeypatch)
    before = set(Client.instances)
    assert (await user.http_client.get('/')).status_code == 200
    (lonely,) = [client for client in Client.instances.values() if client.id not in before]
    Client.prune_instances(client_age_threshold=0)  # what NiceGUI does to it a minute later
    await eventually(lambda: lonely.id in handled)  # the page's handler resumed after its client's deletion, and ended
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert len(room.presence.people) == 1  # the lonely request never joined the room
