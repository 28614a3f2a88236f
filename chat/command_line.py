"""The command line: a flag for each setting, with an environment variable as its default where that makes sense.

`Settings` (config.py) owns every default; the flags only name them. A flag wins over its variable.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from dataclasses import fields
from typing import Any

from sqlalchemy.engine import make_url

from .config import Settings

log = logging.getLogger(__name__)

DEFAULTS = {setting.name: setting.default for setting in fields(Settings)}


def api_key_from_environment() -> str:
    """OPENAI_API_KEY, or the original README's misspelt OPEN_API_KEY (accepted, with a warning)."""
    if key := os.environ.get('OPENAI_API_KEY', '').strip():
        return key
    if key := os.environ.get('OPEN_API_KEY', '').strip():
        log.warning('Using OPEN_API_KEY; the usual name is OPENAI_API_KEY; please rename it.')
        return key
    return ''


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1, with a clear message otherwise."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid int value: {text!r}') from None
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {number}')
    return number


def at_least_zero(text: str) -> int:
    """An argparse type: a whole number of 0 or more (0: off), with a clear message otherwise."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid int value: {text!r}') from None
    if number < 0:
        raise argparse.ArgumentTypeError(f'must be 0 (off) or more, not {number}')
    return number


MIN_KEY_LENGTH = 12


def a_room_key(text: str) -> str:
    """An argparse type: a key long enough not to be guessed (the key page takes ten guesses a minute from an
    address; 12 random characters take longer than anyone waits)."""
    if len(text.strip()) < MIN_KEY_LENGTH:
        raise argparse.ArgumentTypeError(f'a room key needs at least {MIN_KEY_LENGTH} characters (this one has '
                                         f'{len(text.strip())}); leave it out and the app makes a random one')
    return text.strip()


def option(group: argparse._ArgumentGroup, flag: str, setting: str, variable: str | None, help: str,
           **kwargs: Any) -> None:
    """A flag for one setting. Its default is the environment variable, if set (argparse checks a default given as
    text with the flag's own type, so a bad value there gets the same clear message), else Settings' default."""
    default = (os.environ.get(variable) if variable else None) or DEFAULTS[setting]
    group.add_argument(flag, dest=setting, default=default, help=f'{help} (${variable})' if variable else help,
                       **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python main.py',
        description='A chat room where @gpt replies stream into every open tab and stay in a database.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_room_options(parser.add_argument_group('the room'))
    add_bot_options(parser.add_argument_group('the bots'))
    add_sharing_options(parser.add_argument_group('sharing the room (see the README)'))
    return parser


def add_room_options(room: argparse._ArgumentGroup) -> None:
    option(room, '--host', 'host', 'CHAT_HOST', 'address to serve on')
    option(room, '--port', 'port', 'CHAT_PORT', 'port', type=positive)
    room.add_argument('--db', default=os.environ.get('CHAT_DB') or os.environ.get('DATABASE_URL') or DEFAULTS['db'],
                      help='SQLite file path, or a database URL such as postgresql://user@host/chat '
                           '($CHAT_DB or $DATABASE_URL)')
    room.add_argument('--no-seed', dest='seed', action='store_false',
                      help='do not play the demo conversation on an empty database')
    room.add_argument('--no-browser', dest='show_browser', action='store_false', help='do not open a browser tab')
    room.add_argument('--native', action='store_true', help="open a desktop window (needs the 'native' extra)")
    option(room, '--max-message-chars', 'max_message_chars', 'CHAT_MAX_MESSAGE_CHARS', 'longest message accepted',
           type=positive)
    option(room, '--messages-per-10s', 'messages_per_10s', 'CHAT_MESSAGES_PER_10S',
           'messages one person may send in 10 seconds', type=positive)
    room.add_argument('--reset', action='store_true', help='delete every message first (asks to confirm)')
    room.add_argument('--yes', action='store_true', help='answer yes to the --reset question')


def add_sharing_options(sharing: argparse._ArgumentGroup) -> None:
    option(sharing, '--room-key', 'room_key', 'CHAT_ROOM_KEY', 'the room opens only to a browser that came with this '
           'key (the invite link http://HOST:PORT/?key=KEY); off loopback, without one, a random key is made',
           type=a_room_key)
    sharing.add_argument('--no-room-key', action='store_true',
                         help='open the room to anyone who reaches the port, even off loopback (not recommended)')
    option(sharing, '--allowed-hosts', 'allowed_hosts', 'CHAT_ALLOWED_HOSTS', 'more names the room is served under, '
           'comma separated (requests for other names are refused: DNS rebinding)')
    option(sharing, '--daily-token-budget', 'daily_token_budget', 'CHAT_DAILY_TOKEN_BUDGET', 'prompt and completion '
           'tokens all bots may use in a UTC day; questions past it are refused (0: no budget)', type=at_least_zero)
    option(sharing, '--room-gpt-per-minute', 'room_gpt_per_minute', 'CHAT_ROOM_GPT_PER_MINUTE',
           'questions to the bots the whole room may ask in a minute (every instance together)', type=positive)
    option(sharing, '--room-messages-per-minute', 'room_messages_per_minute', 'CHAT_ROOM_MESSAGES_PER_MINUTE',
           'messages the whole room may send in a minute', type=positive)


def add_bot_options(bot: argparse._ArgumentGroup) -> None:
    option(bot, '--bots', 'bots_file', 'CHAT_BOTS', 'a TOML file with a [[bots]] table for each bot of the room '
           '(name, provider, model; see the README); without one the room has @gpt')
    option(bot, '--provider', 'provider', 'CHAT_PROVIDER', "who answers @gpt: auto = OpenAI when a key is set, else "
           "the local model when the 'local' extra is installed, else the offline demo bot",
           choices=['auto', 'openai', 'local', 'demo'])
    option(bot, '--model', 'model', 'OPENAI_MODEL', 'OpenAI chat model')
    option(bot, '--model-path', 'model_path', 'CHAT_MODEL_PATH', "a GGUF chat model file for the local provider; "
           "default: SmolLM2-135M-Instruct from the 'local' extra")
    option(bot, '--gpt-per-minute', 'gpt_per_minute', 'CHAT_GPT_PER_MINUTE',
           'questions to the bots one person may ask in a minute (a message to two bots asks two)', type=positive)
    option(bot, '--max-replies-at-once', 'max_replies_at_once', 'CHAT_MAX_REPLIES_AT_ONCE',
           'replies streaming at once in the room', type=positive)
    option(bot, '--max-context-chars', 'max_context_chars', 'CHAT_MAX_CONTEXT_CHARS',
           'characters of context the model reads at most', type=positive)
    option(bot, '--max-tokens', 'max_tokens', 'CHAT_MAX_TOKENS', 'cap on completion tokens per reply', type=positive)
    option(bot, '--context-messages', 'context_messages', 'CHAT_CONTEXT_MESSAGES',
           'messages the model reads, ending with the question it answers', type=positive)
    option(bot, '--system-prompt', 'system_prompt', 'CHAT_SYSTEM_PROMPT', 'the system prompt')
    option(bot, '--retries', 'max_retries', 'CHAT_RETRIES', 'retries of a failed request to the provider', type=int)
    option(bot, '--timeout', 'reply_timeout', 'CHAT_TIMEOUT',
           'seconds without a first or a new token before a reply fails', type=float)


def parse_settings(argv: list[str] | None = None) -> Settings:
    arguments = vars(build_parser().parse_args(argv))
    return Settings(**arguments, api_key=api_key_from_environment(), base_url=os.environ.get('OPENAI_BASE_URL') or None)


NATIVE_MISSING = ("--native needs pywebview with Qt, which is not installed. Install it with:\n"
                  "    pip install -e '.[native]'\n"
                  "(on Linux it also needs a desktop session or Xvfb; see the README), or run without --native.")


def reason_not_to_start(settings: Settings) -> str | None:
    """What to tell the person starting the app when it should not start, or None."""
    if settings.native and importlib.util.find_spec('webview') is None:
        return NATIVE_MISSING
    if settings.reset and not confirm_reset(settings):
        return 'Nothing was deleted.'
    return None


def confirm_reset(settings: Settings) -> bool:
    if settings.yes:
        return True
    if not sys.stdin.isatty():
        print('--reset deletes every message; add --yes to confirm when there is no terminal to ask.', file=sys.stderr)
        return False
    where = make_url(settings.db_url).render_as_string(hide_password=True)  # the terminal never shows a password
    answer = input(f'Delete every message in {where}? Type "yes" to confirm: ')
    return answer.strip().lower() == 'yes'
