"""The line under a message (Quasar's `stamp`): its time; for a reply, the model that writes it, how it is doing,
and once it ended, how it went (tokens, first token, time in all)."""

from __future__ import annotations

from datetime import UTC, datetime

from ..models import Kind, Message, Status

STATUS_LABELS = {Status.WAITING: 'waiting for the local model…', Status.THINKING: 'thinking…',
                 Status.STREAMING: 'writing…', Status.STOPPED: 'Stopped', Status.INTERRUPTED: 'Interrupted',
                 Status.ERROR: ''}
# style.css colours the stamp of a reply that did not end well.
STATUS_COLORS = {Status.ERROR: 'message-error', Status.INTERRUPTED: 'message-warning'}


def local_time(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC times
    return aware.astimezone().strftime('%H:%M')


def reply_details(message: Message) -> str:
    parts = [message.model or '']
    if message.completion_tokens is not None:
        about = '≈ ' if message.usage_estimated else ''  # the server sent no usage: an estimate, from the characters
        parts.append(f'{about}{message.prompt_tokens} + {message.completion_tokens} tokens')
    if message.first_token_ms is not None:
        parts.append(f'first token {message.first_token_ms / 1000:.1f} s')
    if message.duration_ms is not None:
        parts.append(f'{message.duration_ms / 1000:.1f} s in all')
    return ' · '.join(part for part in parts if part)


def status_line(message: Message) -> str:
    """What the stamp under a message says: the time, then for a reply the model that writes it (from its first
    moment: with several bots, which one answers matters before the end), and how it is doing or how it went."""
    if message.kind != Kind.BOT:
        return local_time(message.created_at)
    if message.status in STATUS_LABELS:
        how = ' '.join(part for part in (STATUS_LABELS[message.status], message.error or '') if part)
        note = ' · '.join(part for part in (message.model or '', how) if part)
    else:
        note = reply_details(message)
    return ' · '.join(part for part in (local_time(message.created_at), note) if part)
