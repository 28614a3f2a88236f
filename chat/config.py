"""Settings: every knob of the app and its default, in one frozen dataclass.

command_line.py fills it from the flags and environment variables (`python main.py --help` lists them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SYSTEM_PROMPT = (
    'You are GPT, a concise participant in a group chat. Each user message starts with the name of the '
    'person who wrote it ("Ian: ..."). Answer the people who mention you in a few sentences, by name when it helps. '
    'Use Markdown only where it makes the answer clearer, such as code blocks.'
)


@dataclass(frozen=True)
class Settings:
    host: str = '127.0.0.1'
    port: int = 8080
    db: str = field(default='data/chat.db', repr=False)  # a PostgreSQL URL may hold its password
    seed: bool = True
    show_browser: bool = True
    native: bool = False
    reset: bool = False
    yes: bool = False

    bots_file: str | None = None  # a TOML file naming the room's bots (chat/roster.py); without one, @gpt
    provider: str = 'auto'  # who answers @gpt without a bots file: auto | openai | local | demo (chat/roster.py)
    api_key: str = field(default='', repr=False)  # repr=False: a printed Settings never shows the key
    base_url: str | None = field(default=None, repr=False)  # some gateways put a key in the URL
    model: str = 'gpt-4.1-mini'
    model_path: str | None = None  # a GGUF chat model file for the local provider (default: SmolLM2 from its package)
    max_tokens: int = 1024
    context_messages: int = 20
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    reply_timeout: float = 30.0  # seconds without a first token, or without a new one, before a reply fails
    connect_timeout: float = 5.0
    max_retries: int = 2

    # Sharing the room (chat/ui/access.py): who may come in, and what visitors may cost
    room_key: str | None = field(default=None, repr=False)  # off loopback, without one, a random key is made
    no_room_key: bool = False  # open to anyone who reaches the port, even off loopback (with a warning)
    allowed_hosts: str = ''  # more names the room is served under, comma separated; other Host headers are refused
    daily_token_budget: int = 0  # prompt + completion tokens of all bots in a UTC day; 0: no budget
    room_gpt_per_minute: int = 30  # questions to the bots in the whole room (all instances) in a minute
    room_messages_per_minute: int = 120  # messages in the whole room in a minute (on this instance)

    history_size: int = 100  # messages a tab receives when it opens
    max_message_chars: int = 4000
    messages_per_10s: int = 10  # per person (a tab is a person)
    gpt_per_minute: int = 5  # @gpt questions per person
    max_replies_at_once: int = 10  # replies streaming at once in the room
    max_context_chars: int = 24000  # what the model reads, oldest messages dropped first
    ui_interval: float = 0.05  # the beat: at most 20 text updates a second per tab
    db_interval: float = 0.25  # at most 4 database writes a second per reply

    @property
    def db_url(self) -> str:
        """An SQLAlchemy URL: `--db` may be one already, or a plain file path. PostgreSQL goes through psycopg 3
        (`postgres://` is what some hosts put in DATABASE_URL)."""
        if '://' not in self.db:
            return f'sqlite:///{Path(self.db).expanduser()}'
        scheme, rest = self.db.split('://', 1)
        return f'postgresql+psycopg://{rest}' if scheme in ('postgres', 'postgresql') else self.db
