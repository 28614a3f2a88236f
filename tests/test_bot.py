"""@gpt against a real local HTTP server that speaks OpenAI's streaming format, watched by simulated tabs."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from nicegui.testing import User

from chat.models import Kind, Message, Status
from chat.performance.gc_policy import PUT_OFF
from chat.providers import Request
from chat.room import Room

from .conftest import SentReplyText, eventually, open_room, status_shown
from .fake_openai import FakeOpenAI, Script, numbered_tokens


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return openai_args


def replies(room: Room) -> list[Message]:
    return [message for message in room.recent if message.kind == Kind.BOT]


def text_so_far(room: Room, reply: Message) -> str:
    """A reply's text so far, from its owner (the message's body is written when the reply ends)."""
    live = room.reply_so_far(reply.id)  # type: ignore[arg-type]
    return live.text if live else reply.body


async def ask(user: User, text: str) -> None:
    user.find(marker='input').type(text)
    user.find(marker='send').click()


async def lengths_while_streaming(room: Room, tab: User, reply_id: int, sent_reply_text: SentReplyText) -> set[int]:
    """The lengths of the reply's text this tab showed while the (first) reply was in progress."""
    lengths_seen = set()
    while replies(room)[0].status.in_progress:
        lengths_seen.add(len(sent_reply_text.shown(tab, reply_id)))
        await asyncio.sleep(0.02)
    return lengths_seen


async def finished_reply(room: Room, timeout: float = 10) -> Message:
    await eventually(lambda: replies(room) and not replies(room)[-1].status.in_progress, timeout,
                     'the reply did not finish')
    return replies(room)[-1]


async def test_a_reply_streams_into_two_tabs_and_ends_the_same_everywhere(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI,
        sent_reply_text: SentReplyText) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(60), delay=0.01)
    asker, watcher = two_tabs
    await ask(asker, '@gpt count for us')

    await eventually(lambda: replies(room))
    reply_id = replies(room)[0].id
    assert reply_id is not None
    lengths_seen = await lengths_while_streaming(room, watcher, reply_id, sent_reply_text)
    assert len(lengths_seen) > 2, 'the watcher should see the text grow, not appear at once'

    expected = ''.join(numbered_tokens(60))
    reply = await finished_reply(room)
    assert reply.status == Status.DONE
    for tab in (asker, watcher):
        await eventually(lambda tab=tab: sent_reply_text.shown(tab, reply_id) == expected.strip())
    stored = await room.store.get(reply_id)
    assert stored is not None
    assert (stored.body, stored.status, stored.completion_tokens) == (expected, Status.DONE, 60)
    assert stored.prompt_tokens is not None and stored.duration_ms is not None and stored.first_token_ms is not None
    assert 'tokens' in status_shown(watcher, reply_id)  # usage and timing, shown discreetly


class FedModel:
    """A provider whose reply the test writes as it goes: each text put in `feed` is the next piece; None ends it."""

    name = 'GPT'
    model = description = 'fed'

    def __init__(self) -> None:
        self.feed: asyncio.Queue[str | None] = asyncio.Queue()

    async def stream(self, request: Request) -> AsyncIterator[str]:
        while (text := await self.feed.get()) is not None:
            yield text


async def test_a_tab_opened_mid_reply_gets_the_text_so_far_then_the_rest(
        create_user: Callable[[], User], room: Room, sent_reply_text: SentReplyText,
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = FedModel()
    room.bots['gpt'].provider = model  # the reply waits for the test, however long the late tab takes to open,
    monkeypatch.setattr(room.replies, 'settings', replace(room.replies.settings, reply_timeout=60))  # unwatched
    tokens = numbered_tokens(300)
    asker = create_user()
    await open_room(asker)
    await ask(asker, '@gpt go slowly')
    for token in tokens[:20]:
        model.feed.put_nowait(token)
    await eventually(lambda: replies(room))
    reply_id = replies(room)[0].id
    assert reply_id is not None
    await eventually(lambda: sent_reply_text.shown(asker, reply_id) == ''.join(tokens[:20]).strip())  # all sent

    latecomer = create_user()
    await open_room(latecomer)
    assert sent_reply_text.shown(latecomer, reply_id) == ''.join(tokens[:20]).strip()  # the text so far, at once
    assert replies(room)[0].status == Status.STREAMING
    for token in tokens[20:40]:
        model.feed.put_nowait(token)
    await eventually(lambda: sent_reply_text.shown(latecomer, reply_id) == ''.join(tokens[:40]).strip())  # live
    for token in [*tokens[40:], None]:
        model.feed.put_nowait(token)
    await finished_reply(room)
    await eventually(lambda: sent_reply_text.shown(latecomer, reply_id) == ''.join(tokens).strip())


async def test_a_long_reply_is_coalesced_for_tabs_and_database(user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(1000), delay=0.002)
    await open_room(user)
    tab_updates: list[str] = []
    room.grew.subscribe(lambda growth: tab_updates.extend(grown.text for grown in growth.values()))
    commits_before = room.store.commits
    await ask(user, '@gpt a long one')
    reply = await finished_reply(room, timeout=30)

    assert ''.join(tab_updates) == reply.body == ''.join(numbered_tokens(1000))
    # At most one update a beat and one commit a flush (and a few more: the question, the reply's start and end),
    # however long the reply took on a loaded machine: about 2 s here, so some 40 and 10, not 1,000 of each.
    seconds = reply.duration_ms / 1000  # type: ignore[operator]
    assert len(tab_updates) <= seconds / room.settings.ui_interval + 3, f'{len(tab_updates)} in {seconds:.1f} s'
    commits = room.store.commits - commits_before
    assert commits <= seconds / room.settings.db_interval + 5, f'{commits} commits in {seconds:.1f} s'


async def test_stop_ends_the_reply_in_every_tab_and_closes_the_connection(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI,
        sent_reply_text: SentReplyText) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(500), delay=0.02)
    asker, watcher = two_tabs
    await ask(asker, '@gpt talk a lot')
    await eventually(lambda: replies(room) and text_so_far(room, replies(room)[0]))
    reply_id = replies(room)[0].id
    assert reply_id is not None
    watcher.find(marker='stop').click()  # anyone may stop it, not only the asker

    reply = await finished_reply(room)
    assert reply.status == Status.STOPPED
    assert 0 < len(reply.body) < len(''.join(numbered_tokens(500)))
    await eventually(lambda: fake_openai.open_streams == 0, message='the provider connection stayed open')
    stored = await room.store.get(reply_id)
    assert stored is not None and (stored.status, stored.body) == (Status.STOPPED, reply.body)
    for tab in (asker, watcher):
        await eventually(lambda tab=tab: sent_reply_text.shown(tab, reply_id) == reply.body.strip())
        assert 'Stopped' in status_shown(tab, reply_id)


@pytest.mark.parametrize(('directives', 'expected_error', 'keeps_text'), [
    ('[[status:401]]', 'API key was rejected (401)', False),
    ('[[status:429]]', 'rate limiting us (429)', False),
    ('[[status:500]]', 'server error (500)', False),
    ('[[first_delay:5]]', 'No answer within 2 s', False),
    ('[[tokens:10]] [[stall:3]]', 'stalled: no new text within 2 s', True),
    ('[[tokens:10]] [[drop:4]]', 'connection to the provider dropped mid-reply', True),
    ('[[tokens:10]] [[malformed:3]]', 'malformed response', True),
])
async def test_errors_end_the_reply_with_a_clear_message(
        user: User, room: Room, directives: str, expected_error: str, keeps_text: bool) -> None:
    await open_room(user)
    await ask(user, f'@gpt fail please {directives}')
    reply = await finished_reply(room)
    assert reply.status == Status.ERROR
    assert reply.error is not None and expected_error in reply.error
    assert bool(reply.body) == keeps_text
    assert reply.id is not None
    await eventually(lambda: expected_error in status_shown(user, reply.id))  # type: ignore[arg-type]
    assert 'sk-test-secret-key' not in reply.error
    await ask(user, '@gpt and now? [[tokens:3]]')  # the failed reply released the asker: a new question works
    await eventually(lambda: len(replies(room)) == 2 and replies(room)[-1].status == Status.DONE)


async def test_a_refused_connection_fails_fast_with_a_clear_message(user: User, room: Room) -> None:
    provider = room.bots['gpt'].provider
    provider.client = provider.client.with_options(base_url='http://127.0.0.1:9/v1')  # type: ignore[attr-defined]
    await open_room(user)  # (port 9 is "discard": nothing listens there)
    await ask(user, '@gpt anyone there?')
    reply = await finished_reply(room)
    assert reply.status == Status.ERROR and reply.error is not None and 'Could not reach' in reply.error
    # Refused at once: a refusal takes milliseconds. The bound is well under what a reply that waited would take:
    # the 2 s watchdog (--timeout 2), the 5 s connect timeout, or the SDK's own retries (two: about 1.1-1.5 s).
    assert reply.duration_ms is not None and reply.duration_ms < 1000, reply.duration_ms


async def test_one_pending_reply_per_person(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(200), delay=0.02)
    asker, other = two_tabs
    await ask(asker, '@gpt first question')
    await eventually(lambda: replies(room))
    await ask(asker, '@gpt a second one')
    with asker:
        box = asker.find(marker='input').elements.pop()
    await eventually(lambda: 'still answering your last question' in (box.error or ''))
    assert box.value == '@gpt a second one'
    assert await room.store.count() == 2  # the first question and its reply; the refused one was not stored
    await ask(other, '@gpt meanwhile, my question')  # someone else may ask at the same time
    await eventually(lambda: len(replies(room)) == 2)
    room.stop(replies(room)[0].id)  # type: ignore[arg-type]
    room.stop(replies(room)[1].id)  # type: ignore[arg-type]


async def test_the_context_names_people_and_keeps_order_and_limit(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI) -> None:
    ian, abhi = two_tabs
    ian_name = room.presence.people[next(iter(room.presence.people))].name
    for index in range(3):
        await ask(ian, f'message {index}')
        await eventually(lambda index=index: len(room.recent) == index + 1)
    await ask(abhi, '@gpt what did we say? [[reply:You said 0, 1 and 2.]]')
    await finished_reply(room)
    await ask(abhi, '@gpt and then? [[reply:Then you asked.]]')
    await eventually(lambda: len(replies(room)) == 2)
    await finished_reply(room)

    messages = fake_openai.requests[-1]['body']['messages']
    abhi_name = room.recent[-2].author
    assert messages[0]['role'] == 'system'
    assert [(m['role'], m['content']) for m in messages[1:]][-4:] == [
        ('user', f'{ian_name}: message 2'),
        ('user', f'{abhi_name}: @gpt what did we say? [[reply:You said 0, 1 and 2.]]'),
        ('assistant', 'You said 0, 1 and 2.'),
        ('user', f'{abhi_name}: @gpt and then? [[reply:Then you asked.]]'),
    ]
    assert len(messages) == 1 + 6  # all six messages before the reply fit in the default limit of 20

    room.replies.settings = replace(room.replies.settings, context_messages=4)
    room.bots['gpt'].system_prompt = 'Be brief.'
    await ask(abhi, '@gpt now with less context')
    await eventually(lambda: len(replies(room)) == 3)
    await finished_reply(room)
    messages = fake_openai.requests[-1]['body']['messages']
    assert messages[0] == {'role': 'system', 'content': 'Be brief.'}
    assert [m['content'] for m in messages[1:]] == [
        'You said 0, 1 and 2.', f'{abhi_name}: @gpt and then? [[reply:Then you asked.]]', 'Then you asked.',
        f'{abhi_name}: @gpt now with less context']


async def test_failed_replies_are_left_out_of_the_context(user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await ask(user, '@gpt break [[status:500]]')
    await finished_reply(room)
    await ask(user, '@gpt again')
    await eventually(lambda: len(replies(room)) == 2 and replies(room)[-1].status == Status.DONE)
    roles = [m['role'] for m in fake_openai.requests[-1]['body']['messages']]
    assert roles == ['system', 'user', 'user']  # the failed reply is not sent as an 'assistant' turn


async def test_the_api_key_goes_to_the_provider_only(user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await ask(user, '@gpt hi')
    await finished_reply(room)
    assert fake_openai.requests[-1]['headers']['authorization'] == 'Bearer sk-test-secret-key'
    body = fake_openai.requests[-1]['body']
    assert body['stream'] is True and body['stream_options'] == {'include_usage': True}
    assert body['max_completion_tokens'] == 1024


async def test_closing_every_tab_does_not_stop_the_reply(user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(50), delay=0.02)
    await open_room(user)
    await ask(user, '@gpt keep going without us')
    await eventually(lambda: replies(room) and text_so_far(room, replies(room)[0]))
    assert user.client is not None
    user.client.delete()
    reply = await finished_reply(room)
    stored = await room.store.get(reply.id)  # type: ignore[arg-type]
    assert stored is not None and (stored.status, stored.body) == (Status.DONE, ''.join(numbered_tokens(50)))


async def test_shutting_down_mid_reply_marks_it_interrupted_with_its_text(
        user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(500), delay=0.02)
    await open_room(user)
    await ask(user, '@gpt a long answer')
    await eventually(lambda: replies(room) and len(text_so_far(room, replies(room)[0])) > 10)
    reply_id = replies(room)[0].id
    await room.replies.interrupt_all()
    stored = await room.store.get(reply_id)  # type: ignore[arg-type]
    assert stored is not None and stored.status == Status.INTERRUPTED
    assert stored.body and ''.join(numbered_tokens(500)).startswith(stored.body)


async def test_two_people_asking_at_once_each_get_an_answer_to_their_own_question(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI) -> None:
    first, second = two_tabs
    await ask(first, '@gpt what is 1 + 1?')
    await ask(second, '@gpt what is the capital of France?')  # stored before the first question's reply starts
    await eventually(lambda: len(replies(room)) == 2 and not any(r.status.in_progress for r in replies(room)))
    asked = {request['body']['messages'][-1]['content'].split(': ', 1)[1] for request in fake_openai.requests}
    assert asked == {'@gpt what is 1 + 1?', '@gpt what is the capital of France?'}  # each reply sees its own


async def test_pressing_stop_again_while_the_reply_ends_still_ends_it_cleanly(
        user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(500), delay=0.02)
    await open_room(user)
    await ask(user, '@gpt talk a lot')
    await eventually(lambda: replies(room) and text_so_far(room, replies(room)[0]))
    reply_id = replies(room)[0].id
    assert reply_id is not None
    deadline = asyncio.get_running_loop().time() + 5
    while reply_id in room.replies.in_progress and asyncio.get_running_loop().time() < deadline:
        room.stop(reply_id)  # an impatient reader, at every turn of the loop, while the reply saves its end
        await asyncio.sleep(0)
    assert reply_id not in room.replies.in_progress, 'the reply never ended'
    reply = await finished_reply(room)
    assert reply.status == Status.STOPPED and not room.replies.in_progress and not room.limits.reserved
    assert gc.get_threshold()[2] != PUT_OFF, 'full garbage collections stayed off'


@pytest.mark.parametrize('ending', ['stop', 'shutdown'])
async def test_a_reply_cancelled_before_its_first_step_still_ends(user: User, room: Room, ending: str) -> None:
    """A Stop from another tab (or the shutdown) can come in the same turn of the event loop as the reply's start,
    before its task has taken a step: the reply must end all the same, not stay "thinking" with its asker locked
    out."""
    await open_room(user)
    question = await room.store.add(Message(author='Ian', author_id='ian', body='@gpt hello'))
    reply = await room.replies.start(next(iter(room.bots.values())), question, ('ian',))
    if ending == 'stop':
        room.stop(reply.id)  # no await between the start and this: the task has not begun
        await eventually(lambda: reply.message.status == Status.STOPPED and not room.replies.in_progress)
    else:
        await room.replies.interrupt_all()
        assert reply.message.status == Status.INTERRUPTED and not room.replies.in_progress
    stored = await room.store.get(reply.id)
    assert stored is not None and stored.status == reply.message.status
