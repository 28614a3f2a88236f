"""Several bots in one room, from a bots file: each answers its mentions with its own model and prompt."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.testing import User

from chat import roster
from chat.config import Settings
from chat.demo_bot import DemoProvider
from chat.models import Kind, Message
from chat.providers import OpenAIProvider
from chat.room import Room
from chat.roster import BotsFileError, make_bots

from .conftest import SentReplyText, eventually, open_room
from .fake_openai import FakeOpenAI, Script, numbered_tokens, split_reply
from .test_bot import ask

ROOT = Path(__file__).parent.parent
TWO_BOTS = '''
[[bots]]
name = "critic"
provider = "openai"
model = "critic-model"
system_prompt = "Be harsh."

[[bots]]
name = "helper"
provider = "openai"
model = "helper-model"
api_key_env = "HELPER_KEY"
system_prompt = "Be kind."
max_tokens = 300
'''


@pytest.fixture
def bots_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv('HELPER_KEY', 'sk-helper-secret')
    path = tmp_path / 'bots.toml'
    path.write_text(TWO_BOTS)
    return path


@pytest.fixture
def app_args(openai_args: list[str], bots_file: Path) -> list[str]:
    return [*openai_args, '--bots', str(bots_file)]


def replies(room: Room) -> list[Message]:
    return [message for message in room.recent if message.kind == Kind.BOT]


async def test_each_bot_answers_its_mentions_with_its_model_prompt_and_key(user: User, room: Room,
                                                                          fake_openai: FakeOpenAI) -> None:
    assert list(room.bots) == ['critic', 'helper']
    await open_room(user)
    await ask(user, '@critic what do you think? [[tokens:3]]')
    await eventually(lambda: len(replies(room)) == 1 and not replies(room)[0].status.in_progress)
    await ask(user, 'and you, @Helper? [[tokens:3]]')
    await eventually(lambda: len(replies(room)) == 2 and not replies(room)[1].status.in_progress)
    critic, helper = fake_openai.requests[-2:]
    assert (critic['body']['model'], critic['body']['messages'][0]['content']) == ('critic-model', 'Be harsh.')
    assert (helper['body']['model'], helper['body']['messages'][0]['content']) == ('helper-model', 'Be kind.')
    assert critic['headers']['authorization'] == 'Bearer sk-test-secret-key'  # OPENAI_API_KEY, as without a file
    assert helper['headers']['authorization'] == 'Bearer sk-helper-secret'  # its own key variable
    assert helper['body']['max_completion_tokens'] == 300
    assert [(m.author, m.author_id, m.model) for m in replies(room)] == [
        ('critic', 'bot:critic', 'critic-model'), ('helper', 'bot:helper', 'helper-model')]


async def test_a_message_to_two_bots_streams_two_replies_at_once_into_two_tabs(
        two_tabs: tuple[User, User], room: Room, fake_openai: FakeOpenAI, sent_reply_text: SentReplyText) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(60), delay=0.02)
    asker, watcher = two_tabs
    await ask(asker, '@critic and @helper: what now?')
    await eventually(lambda: len(room.replies.in_progress) == 2
                     and all(len(reply.text) > 20 for reply in room.replies.in_progress.values()), 3,
                     'the two replies did not stream at the same time')
    await eventually(lambda: len(replies(room)) == 2 and not any(m.status.in_progress for m in replies(room)), 10)
    expected = ''.join(numbered_tokens(60)).strip()
    for tab in (asker, watcher):
        for reply in replies(room):
            await eventually(lambda tab=tab, reply=reply: sent_reply_text.shown(tab, reply.id) == expected)
    assert sorted(m.author for m in replies(room)) == ['critic', 'helper']


async def test_each_bot_reads_its_own_replies_as_its_turns_and_the_other_bot_as_a_participant(
        user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    for number, question in enumerate(['@critic one [[reply:Bad idea.]]', '@helper two [[reply:Good idea!]]',
                                       '@critic three'], 1):
        await ask(user, question)
        await eventually(lambda number=number: len(replies(room)) == number
                         and not replies(room)[-1].status.in_progress)
    turns = [(m['role'], m['content']) for m in fake_openai.requests[-1]['body']['messages'][1:]]
    assert turns[-5:-1] == [('user', f'{room.recent[0].author}: @critic one [[reply:Bad idea.]]'),
                            ('assistant', 'Bad idea.'),
                            ('user', f'{room.recent[0].author}: @helper two [[reply:Good idea!]]'),
                            ('user', 'helper: Good idea!')]


async def test_bots_never_answer_bots(user: User, room: Room, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=split_reply('Over to you, @helper.'))  # (in the question, it would ask it)
    await open_room(user)
    await ask(user, '@critic call your friend')
    await eventually(lambda: len(replies(room)) == 1 and not replies(room)[0].status.in_progress)
    await eventually(lambda: 'Over to you' in replies(room)[0].body)
    await ask(user, '@critic and now?')  # a barrier: by its end, the room has long handled the first reply's end
    await eventually(lambda: len(replies(room)) >= 2 and not replies(room)[-1].status.in_progress)
    assert [m.author for m in replies(room)] == ['critic', 'critic'] and not room.replies.in_progress


async def test_one_pending_question_per_person_and_bot(create_user: Callable[[], User], room: Room,
                                                      fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(300), delay=0.02)
    asker = create_user()
    await open_room(asker)
    await ask(asker, '@critic first')
    await eventually(lambda: len(room.replies.in_progress) == 1)
    await ask(asker, '@critic again')
    with asker:
        box = asker.find(marker='input').elements.pop()
    await eventually(lambda: '@critic is still answering your last question' in (box.error or ''))
    box.value = ''
    await ask(asker, '@helper meanwhile')  # another bot may be asked at the same time
    await eventually(lambda: len(room.replies.in_progress) == 2)
    for reply_id in list(room.replies.in_progress):
        room.stop(reply_id)


async def test_the_bots_are_listed_and_offered_as_you_type_an_at(user: User, room: Room) -> None:
    await open_room(user)
    await user.should_see('@critic · critic-model')
    await user.should_see('@helper · helper-model')
    user.find(marker='input').type('thanks @h')
    with user:
        items = [item for item in user.find(marker='bot-suggestions').elements.pop().descendants()
                 if isinstance(item, ui.menu_item)]
        offered = [item.default_slot.children[0].text for item in items if item.visible]  # its one section
    assert offered == ['@helper']
    user.find(marker='suggest-helper').click()
    with user:
        assert user.find(marker='input').elements.pop().value == 'thanks @helper '


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'bots.toml'
    path.write_text(text)
    return path


@pytest.mark.parametrize(('text', 'problem'), [
    ('[[bots]\nname = "x"', 'not TOML'),
    ('[room]\nname = "x"', 'needs a [[bots]] table for each bot'),
    ('[[bots]]\nname = "critic"\nprovider = "opneai"', 'bot "critic": unknown provider \'opneai\'; use one of'),
    ('[[bots]]\nname = "critic"\nprovider = "demo"\n[[bots]]\nname = "Critic"\nprovider = "demo"',
     'bot "Critic": a bot of that name comes earlier'),
    ('[[bots]]\nname = "the critic"\nprovider = "demo"', 'bot "the critic": its name must be a letter'),
    ('[[bots]]\nname = "critic"\nprovider = "openai"\napi_key_env = "NO_SUCH_KEY_VARIABLE"',
     'bot "critic": its key variable NO_SUCH_KEY_VARIABLE is not set'),
    ('[[bots]]\nname = "critic"\nprovider = "demo"\nmodle = "x"', 'bot "critic": unknown field(s) modle'),
    ('[[bots]]\nprovider = "demo"', 'bot number 1: its name must be'),
    ('[[bots]]\nname = "critic"\nprovider = "demo"\nmax_tokens = 0', 'max_tokens must be a whole number'),
])
def test_a_bad_bots_file_says_which_file_which_bot_and_what(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BotsFileError) as refusal:
        make_bots(Settings(bots_file=str(path)))
    assert str(refusal.value).startswith(f'Bots file {path}') and problem in str(refusal.value), str(refusal.value)


def test_a_bad_bots_file_stops_the_app_at_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[[bots]]\nname = "critic"\nprovider = "opneai"')
    environment = {name: value for name, value in os.environ.items() if not name.startswith('PYTEST_')}
    result = subprocess.run([sys.executable, 'main.py', '--no-browser', '--db', str(tmp_path / 'chat.db'), '--bots',
                             str(path)], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f'Bots file {path}, bot "critic": unknown provider' in result.stderr


def test_without_a_file_the_room_has_gpt_and_local_beside_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roster, 'local_model_installed', lambda: False)
    assert [(bot.name, type(bot.provider)) for bot in make_bots(Settings(api_key='sk-x'))] == [('gpt', OpenAIProvider)]
    assert [(bot.name, type(bot.provider)) for bot in make_bots(Settings())] == [('gpt', DemoProvider)]
    monkeypatch.setattr(roster, 'local_model_installed', lambda: True)
    bots = make_bots(Settings(api_key='sk-x'))  # the local model is loaded at its first question, not now
    assert [bot.name for bot in bots] == ['gpt', 'local'] and bots[1].author == 'SmolLM2'
