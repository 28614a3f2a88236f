"""Settings: one frozen dataclass, filled from the command line, with environment variables as defaults."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MODEL = 'gpt-4.1-mini'
DEFAULT_SYSTEM_PROMPT = (
    'You are GPT, a concise participant in a group chat. Each user message starts with the name of the '
    'person who wrote it ("Ian: ..."). Answer the people who mention you in a few sentences, by name when it helps. '
    'Use Markdown only where it makes the answer clearer, such as code blocks.'
)


@dataclass(frozen=True)
class Settings:
    host: str = '127.0.0.1'
    port: int = 8080
    db: str = 'data/chat.db'
    seed: bool = True
    show_browser: bool = True
    native: bool = False
    reset: bool = False
    yes: bool = False

    provider: str = 'auto'  # auto | openai | local | demo (chat/providers.py decides what auto means)
    api_key: str = field(default='', repr=False)  # repr=False: a printed Settings never shows the key
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    max_tokens: int = 1024
    context_messages: int = 20
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    first_token_timeout: float = 30.0
    stall_timeout: float = 30.0
    connect_timeout: float = 5.0
    max_retries: int = 2
    model_path: str | None = None  # a GGUF chat model file for the local provider (default: SmolLM2 from its package)

    history_size: int = 100  # messages a tab receives when it opens
    max_message_chars: int = 4000
    messages_per_10s: int = 10  # per person (a tab is a person)
    gpt_per_minute: int = 5  # @gpt questions per person
    max_replies_at_once: int = 10  # replies streaming at once in the room
    max_context_chars: int = 24000  # what the model reads, oldest messages dropped first
    ui_interval: float = 0.05  # at most 20 text updates a second per tab
    db_interval: float = 0.25  # at most 4 database writes a second per reply

    @property
    def db_url(self) -> str:
        """An SQLAlchemy URL: `--db` may be one already, or a plain file path. PostgreSQL goes through psycopg 3
        (`postgres://` is what some hosts put in DATABASE_URL)."""
        if '://' not in self.db:
            return f'sqlite:///{Path(self.db).expanduser()}'
        scheme, rest = self.db.split('://', 1)
        return f'postgresql+psycopg://{rest}' if scheme in ('postgres', 'postgresql') else self.db


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


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog='python main.py',
        description='A chat room where @gpt replies stream into every open tab and stay in a database.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    room = parser.add_argument_group('the room')
    room.add_argument('--host', default=env('CHAT_HOST', Settings.host), help='address to serve on ($CHAT_HOST)')
    room.add_argument('--port', type=positive, default=int(env('CHAT_PORT', Settings.port)), help='port ($CHAT_PORT)')
    room.add_argument('--db', default=env('CHAT_DB') or env('DATABASE_URL') or Settings.db,
                      help='SQLite file path, or a database URL such as postgresql://user@host/chat '
                           '($CHAT_DB or $DATABASE_URL)')
    room.add_argument('--no-seed', dest='seed', action='store_false',
                      help='do not play the demo conversation on an empty database')
    room.add_argument('--no-browser', dest='show_browser', action='store_false', help='do not open a browser tab')
    room.add_argument('--native', action='store_true', help="open a desktop window (needs the 'native' extra)")
    room.add_argument('--max-message-chars', type=positive, default=int(env('CHAT_MAX_MESSAGE_CHARS', 4000)),
                      help='longest message accepted ($CHAT_MAX_MESSAGE_CHARS)')
    room.add_argument('--messages-per-10s', type=positive, default=int(env('CHAT_MESSAGES_PER_10S', 10)),
                      help='messages one person may send in 10 seconds ($CHAT_MESSAGES_PER_10S)')
    room.add_argument('--reset', action='store_true', help='delete every message first (asks to confirm)')
    room.add_argument('--yes', action='store_true', help='answer yes to the --reset question')

    bot = parser.add_argument_group('the bot')
    bot.add_argument('--provider', choices=['auto', 'openai', 'local', 'demo'], default=env('CHAT_PROVIDER', 'auto'),
                     help="who answers @gpt: auto = OpenAI when a key is set, else the local model when the 'local' "
                          'extra is installed, else the offline demo bot ($CHAT_PROVIDER)')
    bot.add_argument('--model', default=env('OPENAI_MODEL', Settings.model), help='OpenAI chat model ($OPENAI_MODEL)')
    bot.add_argument('--model-path', default=env('CHAT_MODEL_PATH') or None,
                     help="a GGUF chat model file for the local provider; default: SmolLM2-135M-Instruct from the "
                          "'local' extra ($CHAT_MODEL_PATH)")
    bot.add_argument('--gpt-per-minute', type=positive, default=int(env('CHAT_GPT_PER_MINUTE', 5)),
                     help='@gpt questions one person may ask in a minute ($CHAT_GPT_PER_MINUTE)')
    bot.add_argument('--max-replies-at-once', type=positive, default=int(env('CHAT_MAX_REPLIES_AT_ONCE', 10)),
                     help='replies streaming at once in the room ($CHAT_MAX_REPLIES_AT_ONCE)')
    bot.add_argument('--max-context-chars', type=positive, default=int(env('CHAT_MAX_CONTEXT_CHARS', 24000)),
                     help='characters of context the model reads at most ($CHAT_MAX_CONTEXT_CHARS)')
    bot.add_argument('--max-tokens', type=positive, default=int(env('CHAT_MAX_TOKENS', Settings.max_tokens)),
                     help='cap on completion tokens per reply ($CHAT_MAX_TOKENS)')
    bot.add_argument('--context-messages', type=positive,
                     default=int(env('CHAT_CONTEXT_MESSAGES', Settings.context_messages)),
                     help='messages before the reply sent as context ($CHAT_CONTEXT_MESSAGES)')
    bot.add_argument('--system-prompt', default=env('CHAT_SYSTEM_PROMPT', Settings.system_prompt),
                     help='the system prompt ($CHAT_SYSTEM_PROMPT)')
    bot.add_argument('--retries', dest='max_retries', type=int, default=int(env('CHAT_RETRIES', Settings.max_retries)),
                     help='retries of a failed request to the provider ($CHAT_RETRIES)')
    bot.add_argument('--timeout', dest='stall_timeout', type=float,
                     default=float(env('CHAT_TIMEOUT', Settings.stall_timeout)),
                     help='seconds without a first or a new token before a reply fails ($CHAT_TIMEOUT)')
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    values = vars(args)
    values['first_token_timeout'] = values['stall_timeout']
    return Settings(**values, api_key=api_key_from_environment(), base_url=os.environ.get('OPENAI_BASE_URL') or None)
