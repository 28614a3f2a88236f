"""Counting tokens the provider did not count: a reply's cost when its server sent no usage, and what a reply may
cost before it has begun (the daily budget holds that much for it, limits.py).

llama.cpp's OpenAI-compatible server and some Ollama versions send no usage with a stream. llama.cpp's counts with
the model's own tokenizer (server_tokenizer.py); where no tokenizer fits the model (Ollama, and a reply stopped
midway, whose stream is closed), the count is an estimate: about four characters a token, as OpenAI says of English
text, and a few tokens of framing for each message of the prompt. Both are stored marked as estimates.
"""

from __future__ import annotations

from .providers import ChatMessages, Request, Usage

CHARS_PER_TOKEN = 4
FRAMING_TOKENS = 4  # for each message of a prompt: its role and the separators around it


def estimated_prompt_tokens(messages: ChatMessages) -> int:
    return sum(len(message['content']) for message in messages) // CHARS_PER_TOKEN + FRAMING_TOKENS * len(messages)


def estimated_usage(request: Request, text: str) -> Usage:
    """The prompt's estimate, and the reply's text so far (none, if it was stopped before its first token)."""
    return Usage(prompt_tokens=estimated_prompt_tokens(request.messages),
                 completion_tokens=max(1, len(text) // CHARS_PER_TOKEN) if text else 0, estimated=True)


def usage_to_store(request: Request | None, text: str, *, refused: bool) -> Usage | None:
    """What a reply's end stores as its cost: the provider's count; without one, an estimate (a server that sends
    none and has no tokenizer to offer, or a Stop, even before the first token: the prompt was sent); nothing for a
    question never sent, or refused before any text."""
    if request is None or request.usage is not None or refused:
        return request.usage if request else None
    return estimated_usage(request, text)


def prompt_bound_tokens(messages: ChatMessages) -> int:
    """The most tokens this prompt can be, whatever the language: a token is at least one byte of UTF-8 (Chinese
    or code can come near one token a character, four times the estimate above). The budget holds this much."""
    return sum(len(message['content'].encode()) for message in messages) + FRAMING_TOKENS * len(messages)


def longest_prompt_bound(system_prompt: str, max_chars: int, messages: int) -> int:
    """The bound of the longest prompt a bot may be sent: its system prompt, then at most `max_chars` of
    conversation (up to four bytes a character) in at most `messages` messages (bot.py `prompt`)."""
    return len(system_prompt.encode()) + 4 * max_chars + FRAMING_TOKENS * (messages + 1)
