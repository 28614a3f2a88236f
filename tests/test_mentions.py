"""The @gpt mention rule and the prompt the model receives."""

from __future__ import annotations

import pytest

from chat.bot import Bot
from chat.demo_bot import DemoProvider
from chat.models import Kind, Message

GPT = Bot('gpt', DemoProvider(), system_prompt='Be brief.', max_tokens=100)


@pytest.mark.parametrize('text', ['@gpt hi', 'hi @gpt', '@GPT?', 'Thanks @Gpt!', 'hey,@gpt', '(@gpt)', 'ok @gpt.',
                                  '@gpt, what now', 'line one\n@gpt line two', '"@gpt"', "@gpt's view"])
def test_mentions(text: str) -> None:
    assert GPT.is_mentioned_in(text)


@pytest.mark.parametrize('text', ['me@gpt.com', 'write to me@gpt', '@gpt.com is a domain', '@gpt4 is another bot',
                                  '@gpt_bot', 'gpt', '@ gpt', 'x@GPT', '@gpt-4o'])
def test_not_mentions(text: str) -> None:
    assert not GPT.is_mentioned_in(text)


def test_the_prompt_names_people_and_gives_the_bot_its_own_role() -> None:
    context = [Message(author='Ian', author_id='a', body='Hi'),
               Message(author='Abhi', author_id='b', body='@gpt thoughts?'),
               Message(kind=Kind.BOT, author='GPT', author_id='bot', body='Sounds good.')]
    assert GPT.prompt(context) == [
        {'role': 'system', 'content': 'Be brief.'},
        {'role': 'user', 'content': 'Ian: Hi'},
        {'role': 'user', 'content': 'Abhi: @gpt thoughts?'},
        {'role': 'assistant', 'content': 'Sounds good.'},
    ]
