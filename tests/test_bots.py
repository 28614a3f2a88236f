"""Several bots in one room, from a bots file: each answers its mentions with its own model and prompt."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nicegui import ElementFilter, ui
from nicegui.testing import User

from chat import roster
from chat.command_line import parse_settings
from chat.config import Settings
from chat.demo_bot import DemoProvider
from chat.models import Kind, Message
from chat.presence import Person
from chat.providers import OpenAIProvider, Request
from chat.room import Room
from chat.roster import BotsFileError, make_bots
from chat.seed import SCRIPT, play_script

from .conftest import SentReplyText, eventually, open_room, status_shown
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


async def test_a_message_whose_tab_goes_away_while_its_replies_start_holds_no_place(
        room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab closing (its send cancelled) while the first of two replies starts: neither bot keeps the writer's
    place, so they may ask both again (the second bot's place was held for good before)."""
    starting = asyncio.Event()

    async def start_that_hangs(*_: object) -> None:
        starting.set()
        await asyncio.Event().wait()
    monkeypatch.setattr(room.replies, 'start', start_that_hangs)
    sending = asyncio.create_task(room.post(Person('writer', 'Writer'), '@critic and @helper, both of you'))
    await asyncio.wait_for(starting.wait(), 5)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert room.limits.reserved == {}


async def test_the_bots_are_listed_and_offered_as_you_type_an_at(user: User, room: Room) -> None:
    await open_room(user)
    with user:  # in "Here now", first, with their model, before the people (who are the ones counted)
        (drawer,) = ElementFilter(kind=ui.right_drawer)
        rows = [element.text for element in drawer.descendants() if isinstance(element, ui.label) and element.text]
    (me,) = room.presence.people.values()
    assert rows == ['Here now (1)', '@critic · critic-model', '@helper · helper-model', f'{me.name} (you)'], rows
    user.find(marker='input').type('thanks @h')
    with user:
        items = [item for item in user.find(marker='bot-suggestions').elements.pop().descendants()
                 if isinstance(item, ui.menu_item)]
        offered = [item.default_slot.children[0].text for item in items if item.visible]  # its one section
    assert offered == ['@helper']
    user.find(marker='suggest-helper').click()
    with user:
        assert user.find(marker='input').elements.pop().value == 'thanks @helper '


async def test_a_tab_builds_its_rename_dialog_and_at_menu_only_when_first_needed_and_once(user: User) -> None:
    """Each element costs every tab memory, and most tabs never rename or type @: the dialog and the menu come with
    the first click or @, and stay for the next."""
    await open_room(user)

    def built() -> tuple[int, int]:
        with user:
            return len(list(ElementFilter(kind=ui.dialog))), len(list(ElementFilter(kind=ui.menu)))
    assert built() == (0, 0)
    user.find(marker='input').type('hello')
    assert built() == (0, 0)  # no @ typed: no menu
    for text in (' @', 'c', ' and @h'):
        user.find(marker='input').type(text)
        assert built() == (0, 1)
    for _ in range(3):
        user.find(marker='me').click()
        assert built() == (1, 1)


def write(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / 'bots.toml'
    path.write_text(text)
    return path


BAD_FILES = [  # (the file, what its message says)
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
    ('[[bots]]\nname = "critic"\nprovider = "openai"', 'bot "critic": it has no key for OpenAI: set OPENAI_API_KEY'),
    ('[[bots]]\nname = "critic"\nprovider = "demo"\nbase_url = "http://127.0.0.1:1/v1"',
     'bot "critic": base_url: only for provider "openai"'),
    ('[[bots]]\nname = "critic"\nprovider = "local"\napi_key_env = "HOME"', 'api_key_env: only for provider "openai"'),
]


@pytest.mark.parametrize(('text', 'problem'), BAD_FILES)
def test_a_bad_bots_file_says_which_file_which_bot_and_what(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BotsFileError) as refusal:
        make_bots(Settings(bots_file=str(path)))
    assert str(refusal.value).startswith(f'Bots file {path}') and problem in str(refusal.value), str(refusal.value)


def test_every_kind_of_bad_bots_file_stops_main_py_with_its_message(tmp_path: Path) -> None:
    """main.py's own `main`, once for each bad file, in one process (a process each would cost seconds apiece)."""
    paths = [str(write(tmp_path / str(number), text)) for number, (text, _) in enumerate(BAD_FILES)]
    script = ('import json, sys, main\nfor path in sys.argv[1:]:\n    try:\n'
              f'        main.main(["--no-browser", "--db", {str(tmp_path / "chat.db")!r}, "--bots", path])\n'
              '    except SystemExit as stop:\n        print(json.dumps(stop.code))\n')
    environment = {name: value for name, value in os.environ.items() if not name.startswith(('PYTEST_', 'OPENAI_'))}
    result = subprocess.run([sys.executable, '-c', script, *paths], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(messages) == len(BAD_FILES), result.stderr
    for path, message, (_, problem) in zip(paths, messages, BAD_FILES, strict=True):
        assert isinstance(message, str) and message.startswith(f'Bots file {path}') and problem in message, message


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


async def test_a_bot_with_a_server_of_its_own_is_not_sent_the_openai_key(tmp_path: Path,
                                                                         fake_openai: FakeOpenAI) -> None:
    path = write(tmp_path, f'[[bots]]\nname = "llama"\nprovider = "openai"\nmodel = "llama3.2"\n'
                           f'base_url = "{fake_openai.base_url}"')
    (llama,) = make_bots(Settings(bots_file=str(path), api_key='sk-openai-secret', base_url='http://127.0.0.1:9/v1'))
    fake_openai.script = Script(send_usage=False)  # as llama.cpp's server: its tokenizer is asked to count
    fake_openai.tokenizer = True
    request = Request([{'role': 'user', 'content': 'hi'}], 5)
    assert [text async for text in llama.provider.stream(request)] and request.usage and request.usage.estimated
    completion, *counting = fake_openai.requests
    assert completion['body']['model'] == 'llama3.2' and {asked['path'] for asked in counting} == {
        '/apply-template', '/tokenize'}
    for asked in fake_openai.requests:
        assert 'sk-openai-secret' not in json.dumps(asked['headers']), asked['path']
    keyless = write(tmp_path, '[[bots]]\nname = "llama"\nprovider = "openai"')  # OPENAI_BASE_URL's server needs none
    assert [bot.name for bot in make_bots(Settings(bots_file=str(keyless), base_url=fake_openai.base_url))] == ['llama']


async def test_a_replys_bubble_names_its_model_from_thinking_to_stopped(user: User, room: Room,
                                                                       fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(300), delay=0.02, first_token_delay=0.5)
    await open_room(user)
    await ask(user, '@helper go on')
    await eventually(lambda: replies(room))
    reply_id = replies(room)[0].id
    assert reply_id is not None
    await eventually(lambda: 'helper-model · thinking…' in status_shown(user, reply_id))
    await eventually(lambda: 'helper-model · writing…' in status_shown(user, reply_id))
    room.stop(reply_id)
    await eventually(lambda: 'helper-model · Stopped' in status_shown(user, reply_id))


class TestOneReplyAtOnce:
    """--max-replies-at-once 1: a message to two bots can never pass, and is told so; one to one bot waits its turn."""

    @pytest.fixture
    def app_args(self, openai_args: list[str], bots_file: Path) -> list[str]:
        return [*openai_args, '--bots', str(bots_file), '--max-replies-at-once', '1']

    async def test_the_cap_says_whether_waiting_helps(self, create_user: Callable[[], User], room: Room,
                                                      fake_openai: FakeOpenAI) -> None:
        fake_openai.script = Script(tokens=numbered_tokens(300), delay=0.02)
        first, second = create_user(), create_user()
        await open_room(first)
        await open_room(second)
        await ask(first, '@critic and @helper, both of you')
        await eventually(lambda: 'This room takes 1 question to the bots in one message at most: ask fewer bots'
                         in error_of(first))
        assert not room.replies.in_progress
        with first:
            first.find(marker='input').elements.pop().value = ''
        await ask(first, '@critic alone')
        await eventually(lambda: len(room.replies.in_progress) == 1)
        await ask(second, '@helper meanwhile')
        await eventually(lambda: 'already writing 1 reply, and this room allows 1 at once. Try' in error_of(second))
        for reply_id in list(room.replies.in_progress):
            room.stop(reply_id)


def error_of(user: User) -> str:
    with user:
        return user.find(marker='input').elements.pop().error or ''


def test_a_demo_bot_from_a_file_says_its_own_name_and_what_to_change(tmp_path: Path) -> None:
    (critic,) = make_bots(Settings(bots_file=str(write(tmp_path, '[[bots]]\nname = "critic"\nprovider = "demo"'))))
    assert isinstance(critic.provider, DemoProvider)
    text = critic.provider.compose([{'role': 'user', 'content': 'Ann: @critic hello'}])
    assert text.startswith('*@critic is the offline demo bot, not a language model') and 'bots file' in text
    assert 'GPT' not in text and 'OPENAI_API_KEY' not in text + critic.description


def test_flags_that_a_bots_file_overrides_are_named_in_a_warning(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, '[[bots]]\nname = "critic"\nprovider = "demo"')
    with caplog.at_level(logging.WARNING, logger='chat.roster'):
        make_bots(Settings(bots_file=str(path)))
        assert not caplog.records
        make_bots(Settings(bots_file=str(path), provider='local', model_path='/x.gguf', system_prompt='Be brief.'))
    (warning,) = caplog.records
    assert warning.getMessage().startswith('--provider, --model-path, --system-prompt: ignored with a bots file')


def test_chat_bots_names_the_file_and_the_flag_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_variable = write(tmp_path / 'a', '[[bots]]\nname = "critic"\nprovider = "demo"')
    from_flag = write(tmp_path / 'b', '[[bots]]\nname = "helper"\nprovider = "demo"')
    monkeypatch.setenv('CHAT_BOTS', str(from_variable))
    assert [bot.name for bot in make_bots(parse_settings([]))] == ['critic']
    assert [bot.name for bot in make_bots(parse_settings(['--bots', str(from_flag)]))] == ['helper']


async def test_the_first_run_script_asks_the_first_bot_of_a_file_without_gpt(user: User, room: Room) -> None:
    await open_room(user)
    await play_script(room, speed=20)
    await eventually(lambda: len(replies(room)) == 2 and not room.replies.in_progress)
    asked = [m for m in room.recent if m.kind == Kind.USER and '@critic' in m.body]
    assert [m.body for m in asked] == [text.replace('@gpt', '@critic') for _, _, text in SCRIPT if '@gpt' in text]
    assert [(m.author, m.reply_to) for m in replies(room)] == [('critic', m.id) for m in asked]
