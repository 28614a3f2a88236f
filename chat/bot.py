"""The bot in the room: how to mention it, who writes its replies (a provider), and how it reads the room.

`Bot` is the persona; the replies it writes are `ReplyStream`s (reply.py); roster.py decides who answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .models import Kind, Message
from .providers import ChatMessages, Provider


@dataclass
class Bot:
    handle: str  # what people write to ask it: 'gpt' answers '@gpt'
    provider: Provider
    system_prompt: str
    max_tokens: int
    mention: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A mention: any case, at the start or after a space or punctuation, not inside a word, an e-mail address
        # (me@gpt.com) or a domain (@gpt.com).
        self.mention = re.compile(rf'(?<![\w@.+-])@{re.escape(self.handle)}(?![\w-]|\.\w)', re.IGNORECASE)

    def is_mentioned_in(self, text: str) -> bool:
        return self.mention.search(text) is not None

    def prompt(self, context: list[Message], max_chars: int | None = None) -> ChatMessages:
        """People speak as `user` with their name in front, so the model can tell them apart; the bot as `assistant`.
        Past `max_chars` of conversation, the oldest messages are left out (the newest, the question, always stays)."""
        turns = []
        for message in context:
            if message.kind == Kind.BOT:
                turns.append({'role': 'assistant', 'content': message.body})
            else:
                turns.append({'role': 'user', 'content': f'{message.author}: {message.body}'})
        if max_chars is not None:
            while len(turns) > 1 and sum(len(turn['content']) for turn in turns) > max_chars:
                turns.pop(0)
        return [{'role': 'system', 'content': self.system_prompt}, *turns]
