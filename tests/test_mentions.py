"""The @gpt mention rule and the prompt the model receives."""

from __future__ import annotations

import pytest

from chat.bot import build_prompt
from chat.models import Kind, Message
from chat.room import mentions_gpt


@pytest.mark.parametrize('text', ['@gpt hi', 'hi @gpt', '@GPT?', 'Thanks @Gpt!', 'hey,@gpt', '(@gpt)', 'ok @gpt.',
                                  '@gpt, what now', 'line one\n@gpt line two', '"@gpt"', "@gpt's view"])
def test_mentions(text: str) -> None:
    assert mentions_gpt(text)


@pytest.mark.parametrize('text', ['me@gpt.com', 'write to me@gpt', '@gpt.com is a domain', '@gpt4 is another bot',
                                  '@gpt_bot', 'gpt', '@ gpt', 'x@GPT', '@gpt-4o'])
def test_not_mentions(text: str) -> None:
    assert not mentions_gpt(text)


def test_the_prompt_names_people_and_gives_the_bot_its_own_role() -> None:
    context = [Message(author='Ian', author_id='a', body='Hi'),
               Message(author='Abhi', author_id='b', body='@gpt thoughts?'),
               Message(kind=Kind.BOT, author='GPT', author_id='bot', body='Sounds good.')]
    assert build_prompt('Be brief.', context) == [
        {'role': 'system', 'content': 'Be brief.'},
        {'role': 'user', 'content': 'Ian: Hi'},
        {'role': 'user', 'content': 'Abhi: @gpt thoughts?'},
        {'role': 'assistant', 'content': 'Sounds good.'},
    ]
