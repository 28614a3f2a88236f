"""Who writes a reply. A provider turns a conversation into a stream of text, and nothing else.

A provider is a small object whose `stream(request)` yields text as it arrives. What it learns beside the text (the
tokens used; for a provider that answers one question at a time, that this one waits in line) it records on the
`Request`, not in the stream. Three stand behind that interface: OpenAI (or any server that speaks its API) through the
official SDK; the offline demo bot, which needs no key and says so (demo_bot.py); and a small model running in this
process, optional (`chat/local_model/`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import openai

from .config import Settings
from .server_tokenizer import ServerTokenizer

ChatMessages = list[dict[str, str]]  # OpenAI's format: [{'role': 'user', 'content': 'Ian: hi'}, ...]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False  # counted here (the server sent none), not what the provider bills


@dataclass
class Request:
    """One question to a provider: what it reads, and what it reports beside the text it streams."""

    messages: ChatMessages
    max_tokens: int
    usage: Usage | None = None  # set by the provider when it knows
    # A provider that answers one question at a time says `True` while others are served first, `False` when this
    # one's turn comes: the reply shows the wait, and its watchdog starts counting then (the first-token time it
    # reports still includes the wait: the reader waited too).
    waiting_in_line: Callable[[bool], None] = lambda waiting: None


class Provider(Protocol):
    name: str  # the author of its replies, unless its bot is given another
    model: str  # stored with each reply
    description: str  # what answers, in a few words for the page header and the terminal (no address, no key)

    def stream(self, request: Request) -> AsyncIterator[str]: ...


class ProviderError(Exception):
    """A provider could not load or answer. Its text is a sentence for people, shown as it is."""


class OpenAIProvider:
    def __init__(self, settings: Settings, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        """OpenAI, or any server that speaks its API; `model`, `base_url` and `api_key` default to the settings'
        (`api_key=''`: send none, as to a server of a bot's own)."""
        self.name = 'GPT'
        self.model = self.description = model or settings.model  # the server's address is not for the page
        key = settings.api_key if api_key is None else api_key
        server = base_url or settings.base_url  # a server of one's own may send no usage: its tokenizer counts
        self.tokenizer = ServerTokenizer(server, key) if server else None
        self.client = openai.AsyncOpenAI(
            api_key=key or 'no-key',  # the SDK insists on one; local servers often want none, and ignore this one
            base_url=server,
            max_retries=settings.max_retries,
            # Connect fast or fail fast; the read timeout is the reply's own watchdog, not the SDK's.
            timeout=openai.Timeout(connect=settings.connect_timeout, read=None, write=30, pool=30),
        )

    async def stream(self, request: Request) -> AsyncIterator[str]:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=request.messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={'include_usage': True},
            max_completion_tokens=request.max_tokens,
        )
        received = []
        async with response:  # leaving the block (done, error or stop) closes the HTTP connection
            async for chunk in response:
                if chunk.choices and (text := chunk.choices[0].delta.content):
                    received.append(text)
                    yield text
                if chunk.usage:
                    request.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        if request.usage is None and self.tokenizer and (counted := await self.tokenizer.count(request.messages,
                                                                                               ''.join(received))):
            request.usage = Usage(*counted, estimated=True)
