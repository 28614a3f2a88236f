"""The one table: every message, from people and from the bots."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import DateTime
from sqlalchemy import Enum as SAEnum
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel

INTERRUPTED_ERROR = 'Interrupted: the server stopped while this reply was written.'


class Kind(StrEnum):
    USER = 'user'
    BOT = 'bot'


class Status(StrEnum):
    """A person's message is DONE when stored; a bot reply walks THINKING -> STREAMING -> one of the ends
    (by way of WAITING when a local model is busy with an earlier question)."""

    WAITING = 'waiting'  # in line for the local model, which answers one question at a time; never stored
    THINKING = 'thinking'
    STREAMING = 'streaming'
    DONE = 'done'
    STOPPED = 'stopped'
    ERROR = 'error'
    INTERRUPTED = 'interrupted'  # the process ended while the reply was in progress

    @property
    def in_progress(self) -> bool:
        return self in {Status.WAITING, Status.THINKING, Status.STREAMING}


def stored_as_value(enum: type[StrEnum]) -> SAEnum:
    """Store an enum as its readable value ('done'), in a plain string column that any database has."""
    return SAEnum(enum, values_callable=lambda members: [member.value for member in members], native_enum=False,
                  length=20)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: Kind = Field(default=Kind.USER, sa_type=stored_as_value(Kind))
    author: str
    author_id: str = Field(index=True)  # a tab's identity id; "mine" is decided by this, never by the name
    body: str = ''
    status: Status = Field(default=Status.DONE, index=True, sa_type=stored_as_value(Status))
    reply_to: int | None = None  # for a bot reply: the message that mentioned the bot
    error: str | None = None  # a short, human note shown in the bubble: why it failed, or who stopped it
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    usage_estimated: bool = Field(default=False, sa_column_kwargs={'server_default': sa_false()})  # no usage was sent
    # With their time zone: PostgreSQL would otherwise read them in its own zone. (SQLite keeps naive UTC.)
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True), index=True)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    # Several instances on one PostgreSQL room (chat/instances/relay.py): the writing instance keeps it in the future.
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
