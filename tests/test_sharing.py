"""A room opened to a team: the key, the host names, the daily budget, the room-wide rates, names, and who pressed
Stop. The key and the host checks run against `python main.py` in its own process, as a visitor meets them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from nicegui import ElementFilter, app
from nicegui.testing import User

from bench.socket_tab import SocketTab
from chat.config import Settings
from chat.models import Kind, Message
from chat.room import Room
from chat.store import Store
from chat.ui.access import WRONG_KEYS_PER_MINUTE, room_key, same_site
from chat.ui.stream import ReplyText

from .browser import AppProcess, child_environment, wait_until
from .conftest import eventually, open_room, people_listed, status_shown
from .fake_openai import FakeOpenAI, Script, numbered_tokens
from .test_bot import ask, replies
from .test_room import my_name, rename

KEY = 'the-right-key-4711'


@pytest.fixture
def keyed_app(tmp_path: Path) -> Iterator[AppProcess]:
    """The app with a room key, and a room that already holds a message nobody without the key may read."""
    async def write() -> None:
        store = Store(f'sqlite:///{tmp_path / "chat.db"}')
        await store.open()
        await store.add(Message(author='Ian', author_id='ian', body='The secret plan is in the drawer.'))
        await store.close()
    asyncio.run(write())
    with AppProcess(tmp_path, ['--room-key', KEY, '--provider', 'demo']) as app:
        yield app


def test_without_the_key_there_is_no_room_to_read(keyed_app: AppProcess) -> None:
    page = httpx.get(keyed_app.url)
    assert page.status_code == 200 and 'This room needs its key' in page.text
    assert 'secret plan' not in page.text and 'client_id' not in page.text  # no NiceGUI page, so no socket to open
    wrong = httpx.get(keyed_app.url, params={'key': 'a-wrong-key'})
    assert wrong.status_code == 401 and 'does not open this room' in wrong.text
    for path in ('/_nicegui_ws/socket.io/?EIO=4&transport=polling', '/avatars/bot.svg', '/_nicegui/3/static/x.js'):
        assert httpx.get(keyed_app.url.rstrip('/') + path).status_code == 403, path


def test_a_raw_socket_client_without_the_key_can_neither_read_nor_post(keyed_app: AppProcess) -> None:
    async def try_it() -> None:
        async with aiohttp.ClientSession() as session:
            tab = SocketTab(session, keyed_app.url, keep_frames=True)
            with pytest.raises(RuntimeError, match='no client id'):
                await tab.open()  # the page it gets is the key page: no client to connect to
            tab.client_id = 'guessed'  # and a socket opened anyway, with any client id, is refused at once
            with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
                await tab._connect()
            assert refusal.value.status == 403
    asyncio.run(try_it())
    assert 'secret plan' not in keyed_app.log()


def test_the_invite_link_lets_a_browser_in_and_its_other_tabs_too(keyed_app: AppProcess) -> None:
    async def visit() -> list[str]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # (IP addresses too)
            async with session.get(keyed_app.url, params={'key': KEY}, allow_redirects=False) as invited:
                assert invited.status == 303 and invited.headers['location'] == '/'  # the key leaves the address
            tabs = [SocketTab(session, keyed_app.url, keep_frames=True) for _ in range(2)]
            for tab in tabs:  # the cookie from the link opens the page and the socket of every tab of the browser
                await tab.open()
                await asyncio.wait_for(tab.ready.wait(), 15)
            await tabs[1].ask('Hello from the second tab')
            deadline = time.monotonic() + 10  # until the first tab has it too
            while not any('Hello from the second tab' in frame for frame in tabs[0].frames or []):
                assert time.monotonic() < deadline, 'the message did not reach the first tab'
                await asyncio.sleep(0.05)
            seen = [''.join(tab.frames or []) for tab in tabs]
            for tab in tabs:
                await tab.close()
            return seen
    first, second = asyncio.run(visit())
    assert 'secret plan' in first and 'Hello from the second tab' in first
    assert 'secret plan' in second


def test_a_request_for_another_host_name_is_refused(chat_process: AppProcess) -> None:
    assert httpx.get(chat_process.url, headers={'Host': 'attacker.example'}).status_code == 400
    assert httpx.get(chat_process.url, headers={'Host': f'attacker.example:{chat_process.port}'}).status_code == 400
    assert httpx.get(chat_process.url).status_code == 200  # 127.0.0.1: served
    assert httpx.get(chat_process.url.replace('127.0.0.1', 'localhost')).status_code == 200


def test_a_socket_opened_from_another_site_is_refused(chat_process: AppProcess) -> None:
    polling = chat_process.url.rstrip('/') + '/_nicegui_ws/socket.io/?EIO=4&transport=polling'
    assert httpx.get(polling, headers={'Origin': 'http://attacker.example'}).status_code == 403
    assert httpx.get(polling, headers={'Origin': 'null'}).status_code == 403  # a sandboxed frame on any page
    another_port = f'http://127.0.0.1:{chat_process.port + 1}'  # another app on this machine is another site
    assert httpx.get(polling, headers={'Origin': another_port}).status_code == 403
    assert httpx.get(polling, headers={'Origin': chat_process.url.rstrip('/')}).status_code != 403


def test_behind_a_proxy_on_this_machine_the_room_still_needs_a_key() -> None:
    assert room_key(Settings(host='127.0.0.1')) is None
    assert room_key(Settings(host='127.0.0.1', allowed_hosts=['chat.example.com'])) is not None
    assert room_key(Settings(host='127.0.0.1', allowed_hosts=['chat.example.com'], no_room_key=True)) is None
    # The proxy passes the Host header on without the port: the page's name must still be the room's.
    assert same_site('https://chat.example.com', 'chat.example.com', {'chat.example.com'})
    assert not same_site('https://chat.example.com', 'other.example.com', {'chat.example.com', 'other.example.com'})
    assert not same_site('http://localhost:8080', 'localhost:not-a-port', {'localhost'})


@pytest.fixture
def chat_process(tmp_path: Path) -> Iterator[AppProcess]:
    with AppProcess(tmp_path, ['--provider', 'demo']) as app:
        yield app


def on_every_address(workdir: Path, *flags: str) -> AppProcess:
    """`python main.py --host 0.0.0.0`: the room served on this machine's every address, as when it is shared."""
    app = AppProcess(workdir, ['--host', '0.0.0.0', '--provider', 'demo', *flags])  # (a later --host wins)
    return app


def test_on_every_address_without_a_key_the_app_makes_one_and_prints_the_link(tmp_path: Path) -> None:
    with on_every_address(tmp_path) as app:
        link = wait_until(app.log, lambda log: '?key=' in log, timeout=10, message='no invite link printed')
        key = link.split('?key=', 1)[1].split()[0]
        assert len(key) >= 20
        assert 'This room needs its key' in httpx.get(app.url).text  # even from this machine: the key is needed
        assert 'client_id' in httpx.get(app.url, params={'key': key}, follow_redirects=True).text


def test_no_room_key_opens_the_room_to_the_network_with_a_warning(tmp_path: Path) -> None:
    with on_every_address(tmp_path, '--no-room-key') as app:
        assert 'client_id' in httpx.get(app.url).text
        assert '--no-room-key: anyone who reaches' in app.log() and '?key=' not in app.log()


# The budget and the rates, with simulated tabs

@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return [*openai_args, '--daily-token-budget', '100', '--room-gpt-per-minute', '3', '--messages-per-10s', '3']


async def test_once_the_days_budget_is_spent_questions_are_refused_before_any_request(
        user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await user.should_see('Today: 0 of 100 tokens')
    fake_openai.script = Script(tokens=numbered_tokens(150))  # one reply crosses the line: it finishes
    await ask(user, '@gpt spend it all')
    await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress)
    assert replies(room)[0].completion_tokens == 150
    spent = replies(room)[0].prompt_tokens + 150  # type: ignore[operator]
    await user.should_see(f'Today: {spent:,} of 100 tokens', retries=50)
    requests = len(fake_openai.requests)
    with user:
        user.find(marker='input').elements.pop().value = ''
    await ask(user, '@gpt one more?')
    with user:
        box = user.find(marker='input').elements.pop()
    await eventually(lambda: "Today's budget for the bots, 100 tokens, is spent" in (box.error or ''))
    assert 'midnight UTC' in box.error and box.value == '@gpt one more?'
    assert len(fake_openai.requests) == requests, 'a request reached the provider past the budget'
    with user:
        user.find(marker='input').elements.pop().value = ''
    await ask(user, 'Talking among people still works')
    await eventually(lambda: room.recent[-1].body == 'Talking among people still works')


async def test_a_server_that_sends_no_usage_is_counted_by_an_estimate(user: User, room: Room) -> None:
    await open_room(user)
    await ask(user, '@gpt answer without usage [[usage:no]] [[tokens:40]]')
    await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress)
    reply = replies(room)[0]
    assert reply.usage_estimated and reply.completion_tokens == len(reply.body) // 4 and reply.prompt_tokens
    assert '≈' in status_shown(user, reply.id)  # type: ignore[arg-type]
    await eventually(lambda: room.limits.spent_today == reply.prompt_tokens + reply.completion_tokens)  # type: ignore[operator]


class TestTheRoomsQuestionRate:
    @pytest.fixture
    def app_args(self, openai_args: list[str]) -> list[str]:  # no budget: each reply in progress would hold all 100
        return [*openai_args, '--room-gpt-per-minute', '3']

    async def test_the_whole_room_asks_at_most_so_many_questions_a_minute(self, create_user: Callable[[], User],
                                                                         room: Room) -> None:
        tabs = [create_user() for _ in range(4)]
        for tab in tabs:
            await open_room(tab)
        for number, tab in enumerate(tabs[:3], 1):
            await ask(tab, f'@gpt question {number} [[tokens:2]]')
            await eventually(lambda number=number: len(replies(room)) == number)
        await ask(tabs[3], '@gpt and mine?')
        with tabs[3]:
            box = tabs[3].find(marker='input').elements.pop()
        await eventually(lambda: 'at most 3 questions a minute from the whole room' in (box.error or ''))


async def test_a_new_tab_of_the_same_browser_does_not_reset_the_limits(create_user: Callable[[], User],
                                                                      room: Room) -> None:
    first, same_browser, other_browser = create_user(), create_user(), create_user()
    await open_room(first)
    same_browser.http_client.cookies = first.http_client.cookies  # the browser's session cookie: one browser
    await open_room(same_browser)
    await open_room(other_browser)
    assert my_name(first) != my_name(same_browser)  # two tabs: two people, in one browser
    for number in range(3):
        await ask(first, f'message {number}')
        await eventually(lambda number=number: len(room.recent) == number + 1)
    await ask(same_browser, 'a fourth from a new tab')
    with same_browser:
        box = same_browser.find(marker='input').elements.pop()
    await eventually(lambda: 'sending messages quickly' in (box.error or ''))
    await ask(other_browser, 'another browser may talk')
    await eventually(lambda: room.recent[-1].body == 'another browser may talk')


async def test_stop_says_who_pressed_it_in_every_tab(two_tabs: tuple[User, User], room: Room,
                                                    fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(500), delay=0.02)
    asker, stopper = two_tabs
    await ask(asker, '@gpt talk a lot')
    await eventually(lambda: room.replies.in_progress)
    stopper.find(marker='stop').click()
    await eventually(lambda: replies(room) and replies(room)[0].status.value == 'stopped')
    for tab in two_tabs:
        await eventually(lambda tab=tab: f'Stopped by {my_name(stopper)}' in status_shown(tab, replies(room)[0].id))


async def test_a_tab_pressing_stop_over_and_over_reaches_the_room_twice_a_second_at_most(
        user: User, room: Room, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop is a socket event a script can send in a loop: the room hears a tab's presses twice a second at most."""
    fake_openai.script = Script(tokens=numbered_tokens(500), delay=0.02)
    await open_room(user)
    await ask(user, '@gpt talk a lot')
    await eventually(lambda: room.replies.in_progress)
    stops: list[float] = []
    monkeypatch.setattr(room, 'stop', lambda message_id, person: stops.append(time.monotonic()))
    for _ in range(50):
        user.find(marker='stop').click()
    assert len(stops) == 1
    await asyncio.sleep(0.6)  # the tab's stop window (0.5 s) is over
    for _ in range(50):
        user.find(marker='stop').click()
    assert len(stops) == 2


@pytest.mark.parametrize(('name', 'problem'), [
    ('', '1 to 40 characters'), ('   ', '1 to 40 characters'), ('x' * 41, '1 to 40 characters'),
    ('Eve\u200b', 'No control or invisible characters'), ('\u202eevE', 'No control or invisible characters'),
    ('Ann\nBob', 'No control or invisible characters'), ('GPT', "That is a bot's name"),
    ('@Gpt', "That is a bot's name"), ('gpt', "That is a bot's name"),
    # Names that draw nothing: a Hangul filler, blank braille, a lone accent, an emoji's variation selector alone.
    ('\u3164', 'letter, digit or sign that shows'), ('\u2800\u2800', 'letter, digit or sign that shows'),
    ('\u115f', 'letter, digit or sign that shows'), ('\u0301', 'letter, digit or sign that shows'),
    ('\ufe0f', 'letter, digit or sign that shows'), ('a' + '\u0301' * 39, 'Too many accents on one letter'),
    # A bot's name in disguise: fullwidth letters, a Cyrillic р, a Greek ρ.
    ('\uff47\uff50\uff54', "That is a bot's name"), ('g\u0440t', "That is a bot's name"),
    ('@G\u03c1T', "That is a bot's name"),
])
async def test_names_that_are_refused(create_user: Callable[[], User], room: Room, name: str, problem: str) -> None:
    tab = create_user()
    await open_room(tab)
    before = my_name(tab)
    await rename(tab, name)
    with tab:
        assert problem in (tab.find(marker='name-input').elements.pop().error or '')
    assert my_name(tab) == before and room.presence.people[next(iter(room.presence.people))].name == before


async def test_another_persons_current_name_is_refused_and_a_new_one_is_taken(create_user: Callable[[], User],
                                                                             room: Room) -> None:
    ann, bob = create_user(), create_user()
    await open_room(ann)
    await open_room(bob)
    bobs_first_name, rows_before = my_name(bob), people_listed(ann)
    assert bobs_first_name in rows_before
    await rename(bob, my_name(ann).upper())
    with bob:
        assert 'Someone here has that name' in (bob.find(marker='name-input').elements.pop().error or '')
    await rename(bob, 'Bob the Builder')
    await eventually(lambda: my_name(bob) == 'Bob the Builder')
    # In Ann's "Here now": Bob's row renamed, not a row added beside the old one
    await eventually(lambda: 'Bob the Builder' in people_listed(ann))
    assert bobs_first_name not in people_listed(ann) and len(people_listed(ann)) == len(rows_before)
    await ask(bob, 'hello')
    await eventually(lambda: room.recent and room.recent[-1].author == 'Bob the Builder'
                     and room.recent[-1].kind == Kind.USER)


# The shortest, the longest, and an emoji (a single one: a joined family holds zero-width joiners, refused).
@pytest.mark.parametrize('name', ['Q', 'x' * 40, 'Zoë 😀 Ñandú'])
async def test_names_at_the_edges_of_the_rule_are_taken(user: User, room: Room, name: str) -> None:
    await open_room(user)
    await rename(user, name)
    await eventually(lambda: my_name(user) == name)
    assert room.presence.people[next(iter(room.presence.people))].name == name


@pytest.mark.parametrize('lookalike', ['\u0399an', 'lan', '1AN', 'I\u0430n', '\uff29an'])  # Greek Ι, l, 1, Cyrillic а
async def test_a_lookalike_of_someone_elses_name_is_refused(create_user: Callable[[], User], room: Room,
                                                            lookalike: str) -> None:
    ian, other = create_user(), create_user()
    await open_room(ian)
    await open_room(other)
    await rename(ian, 'Ian')
    await eventually(lambda: my_name(ian) == 'Ian')
    await rename(other, lookalike)
    with other:
        assert 'Someone here has that name' in (other.find(marker='name-input').elements.pop().error or '')
    assert my_name(other) != lookalike


# Names in other scripts, with their accents and marks: the lookalike rules compare names, they refuse none alone.
@pytest.mark.parametrize('name', ['Nguyễn Thị Ánh', 'Nguye\u0302\u0303n', 'สมศักดิ์', 'Ахмед', 'Δημήτρης',
                                  '山田\u3000太郎', 'हिन्दी'])
async def test_names_in_other_scripts_are_taken(user: User, room: Room, name: str) -> None:
    await open_room(user)
    await rename(user, name)
    await eventually(lambda: my_name(user) == name)


@pytest.mark.parametrize('stored', ['\uff47\uff50\uff54', 'Ian'])  # stored before the rules; taken meanwhile
async def test_a_tab_that_comes_back_with_a_name_no_longer_allowed_gets_another(
        create_user: Callable[[], User], room: Room, stored: str) -> None:
    tab, ian = create_user(), create_user()
    await open_room(tab)
    await open_room(ian)
    await rename(ian, 'Ian')
    await eventually(lambda: my_name(ian) == 'Ian')
    with tab:
        identity = {**app.storage.tab['identity'], 'name': stored}
        app.storage.tab['identity'] = identity
    await open_room(tab)  # the same tab, loaded again
    assert my_name(tab) not in (stored, 'Ian')
    assert room.presence.people[identity['id']].name == my_name(tab)  # the same person, under a new name
    with tab:
        assert app.storage.tab['identity'] == {'id': identity['id'], 'name': my_name(tab)}


async def test_a_tab_asks_for_one_reply_so_far_once_a_second(user: User, room: Room) -> None:
    """Each answer to a resync is the whole reply: a tab (or a script) asking for one reply again and again gets it
    once a second, and another reply still answers."""
    await open_room(user)
    for number in (1, 2):
        await ask(user, f'@gpt reply {number} [[tokens:5]]')
        await eventually(lambda number=number: len(replies(room)) == number
                         and not replies(room)[-1].status.in_progress)
        with user:
            user.find(marker='input').elements.pop().value = ''
    answered: list[int] = []
    with user:
        views = [element for element in ElementFilter(kind=ReplyText)]
    for view in views:
        view.run_method = lambda name, *args, view=view: answered.append(view.message_id)  # type: ignore[method-assign]
    first, second = views
    for _ in range(5):
        first.resync()
    second.resync()
    assert answered == [first.message_id, second.message_id]
    await asyncio.sleep(1.05)  # the rate's window: a second later the same reply is answered again
    first.resync()
    assert answered[-1] == first.message_id and len(answered) == 3


def test_ipv6_loopback_is_served_and_other_ipv6_names_are_not(chat_process: AppProcess) -> None:
    assert httpx.get(chat_process.url, headers={'Host': f'[::1]:{chat_process.port}'}).status_code == 200
    assert httpx.get(chat_process.url, headers={'Host': f'[2001:db8::1]:{chat_process.port}'}).status_code == 400
    polling = chat_process.url.rstrip('/') + '/_nicegui_ws/socket.io/?EIO=4&transport=polling'
    page = f'http://[::1]:{chat_process.port}'
    assert httpx.get(polling, headers={'Host': f'[::1]:{chat_process.port}', 'Origin': page}).status_code != 403


def test_a_wildcard_in_allowed_hosts_serves_the_page_and_its_socket(tmp_path: Path) -> None:
    assert same_site('https://chat.team.example', 'chat.team.example', {'*.team.example'})
    assert not same_site('https://team.example', 'team.example', {'*.team.example'})  # as Starlette reads it
    assert not same_site('https://evil.example', 'evil.example', {'*.team.example'})
    with AppProcess(tmp_path, ['--provider', 'demo', '--allowed-hosts', '*.team.example', '--no-room-key']) as app:
        host = f'chat.team.example:{app.port}'
        assert httpx.get(app.url, headers={'Host': host}).status_code == 200
        polling = app.url.rstrip('/') + '/_nicegui_ws/socket.io/?EIO=4&transport=polling'
        assert httpx.get(polling, headers={'Host': host, 'Origin': f'http://{host}'}).status_code != 403
        assert httpx.get(polling, headers={'Host': host, 'Origin': f'http://evil.example:{app.port}'}).status_code \
            == 403


def test_the_key_page_takes_ten_guesses_a_minute_from_an_address(keyed_app: AppProcess) -> None:
    for number in range(WRONG_KEYS_PER_MINUTE):
        assert httpx.get(keyed_app.url, params={'key': f'guess-{number}'}).status_code == 401
    refused = httpx.get(keyed_app.url, params={'key': 'one-more-guess'})
    assert refused.status_code == 429 and 'Too many wrong keys' in refused.text and refused.headers['Retry-After']
    assert httpx.get(keyed_app.url, params={'key': KEY}).status_code == 429  # not even the right one, for now
    assert 'This room needs its key' in httpx.get(keyed_app.url).text  # the page itself still shows


def test_the_page_never_shows_a_servers_address(tmp_path: Path) -> None:
    """OPENAI_BASE_URL, and a bots file's base_url, may hold credentials or internal names: the page names models."""
    bots = tmp_path / 'bots.toml'
    bots.write_text('[[bots]]\nname = "gpt"\nprovider = "openai"\nmodel = "gpt-4.1-mini"\n\n'
                    '[[bots]]\nname = "inside"\nprovider = "openai"\nmodel = "llama-3-8b"\n'
                    'base_url = "http://svc:hunter2@llm.corp.internal:9999/v1"\n')
    environment = child_environment(OPENAI_API_KEY='sk-test-secret-key',
                                    OPENAI_BASE_URL='http://proxy-user:swordfish@gateway.corp.internal:8443/v1')

    async def everything_a_tab_gets(app: AppProcess) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(app.url) as page:
                html = await page.text()
            tab = SocketTab(session, app.url, keep_frames=True)
            await tab.open()
            await asyncio.wait_for(tab.ready.wait(), 15)
            await tab.close()
            return html + ''.join(tab.frames or [])

    with AppProcess(tmp_path, ['--bots', str(bots)], env=environment) as app:
        seen = asyncio.run(everything_a_tab_gets(app))
        log = app.log()
    assert 'llama-3-8b' in seen and 'gpt-4.1-mini' in seen  # the models are named
    for secret in ('corp.internal', 'hunter2', 'swordfish', ':9999', ':8443', 'sk-test-secret-key'):
        assert secret not in seen, secret
        assert secret not in log, secret
