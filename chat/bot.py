"""A bot in the room: how to mention it, who writes its replies (a provider), and how it reads the room.

`Bot` is the persona; the replies it writes are `ReplyStream`s (reply.py); roster.py decides which bots the room has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .models import Kind, Message
from .providers import ChatMessages, Provider

NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]{0,31}')  # what can follow an @ and be told from the text after it


@dataclass
class Bot:
    name: str  # what people write to ask it: 'gpt' answers '@gpt'
    provider: Provider
    system_prompt: str
    max_tokens: int
    display_name: str = ''  # the name on its replies, if not its provider's ('GPT', 'Demo bot', 'SmolLM2')
    mention: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A mention: any case, at the start or after a space or punctuation, not inside a word, an e-mail address
        # (me@gpt.com) or a domain (@gpt.com).
        self.mention = re.compile(rf'(?<![\w@.+-])@{re.escape(self.name)}(?![\w-]|\.\w)', re.IGNORECASE)

    @property
    def author(self) -> str:
        return self.display_name or self.provider.name

    @property
    def author_id(self) -> str:
        return f'bot:{self.name}'

    @property
    def description(self) -> str:
        """One line for the page and the terminal: who answers this bot's mentions."""
        return f'@{self.name} answers with {self.provider.description}'

    def is_mentioned_in(self, text: str) -> bool:
        return self.mention.search(text) is not None

    def wrote(self, message: Message) -> bool:
        """This bot's own replies. (Before the room had several bots, its one bot, @gpt, signed as plain 'bot'.)"""
        return message.kind == Kind.BOT and message.author_id in (self.author_id, 'bot' if self.name == 'gpt' else '')

    def prompt(self, context: list[Message], max_chars: int | None = None) -> ChatMessages:
        """Its own replies are `assistant` turns; everyone else, people and the other bots, speaks as `user` with their
        name in front, so the model can tell them apart. Past `max_chars` of conversation, the oldest messages are
        left out (the newest, the question, always stays)."""
        turns = []
        for message in context:
            if self.wrote(message):
                turns.append({'role': 'assistant', 'content': message.body})
            else:
                turns.append({'role': 'user', 'content': f'{message.author}: {message.body}'})
        if max_chars is not None:
            while len(turns) > 1 and sum(len(turn['content']) for turn in turns) > max_chars:
                turns.pop(0)
        return [{'role': 'system', 'content': self.system_prompt}, *turns]
