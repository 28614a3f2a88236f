"""One message as one tab shows it: a Quasar chat message with as few elements inside as possible.

A burst of questions builds new bubbles in every open tab at once, so a bubble is kept small: the avatar is an image
URL (avatars.py) and the status line is the chat message's `stamp`. A person's message is 2 elements; a reply is 4
while it is written (its text grows in the browser, see stream.py, beside a Stop button) and 3 once it has ended.
A reply's text is drawn by the same component live and finished, so both look the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from ..markdown import LiveMarkdown
from ..models import Kind, Message, Status
from .avatars import BOT_AVATAR_URL, person_avatar_url
from .stream import ReplyText, reply_state

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


class Bubble:
    def __init__(self, message: Message, *, mine: bool, on_stop: Callable[[int], None],
                 reply_so_far: Callable[[int], LiveMarkdown | None], may_resync: Callable[[int], bool]) -> None:
        self.message = message
        self.reply_so_far = reply_so_far  # asks a reply in progress how far it got (None once it has ended)
        self.stop_button: ui.button | None = None
        is_reply = message.kind == Kind.BOT
        avatar = BOT_AVATAR_URL if is_reply else person_avatar_url(message.author, message.author_id)
        # A person's message is plain text: Quasar's own text part (one child, escaped) is the cheapest way to show it.
        text = None if is_reply else message.body
        self.element = ui.chat_message(text, name=message.author, stamp=status_line(message), avatar=avatar,
                                       sent=mine).classes('w-full').mark(f'message-{message.id}')
        self.element.props['data-message-id'] = str(message.id)  # an HTML attribute: text
        self.element.props['data-kind'] = message.kind
        if not is_reply:
            self.element.default_slot.children[0].classes('message-body message-plain')
            return
        assert message.id is not None
        with self.element, ui.element('div'):  # one child, so Quasar draws one bubble (it draws one per child)
            self.text = ReplyText(message.id, self.state, live=message.status.in_progress, may_resync=may_resync) \
                .classes('message-body reply-text nicegui-markdown')
            if message.status.in_progress:
                self.stop_button = ui.button('Stop', icon='stop', on_click=lambda: on_stop(message.id)) \
                    .props('flat dense size=sm no-caps').classes('q-mt-xs').mark('stop')
        self.show_status(message)

    def state(self) -> dict[str, Any]:
        """The reply so far from its owner; once it has ended, its final text."""
        return reply_state(self.reply_so_far(self.message.id), self.message)  # type: ignore[arg-type]

    def change(self, message: Message) -> None:
        """A reply changed status. At its end the text stays as it streamed (the last block gains its formatting),
        and the Stop button goes."""
        self.message = message
        if not message.status.in_progress:
            self.text.finish()
            if self.stop_button is not None:
                self.stop_button.delete()
                self.stop_button = None
        self.show_status(message)

    def show_status(self, message: Message) -> None:
        self.element.props['stamp'] = status_line(message)
        self.element.props['data-status'] = message.status  # for browser tests and anyone styling the page
        self.element.classes(remove=' '.join(STATUS_COLORS.values()))
        if color := STATUS_COLORS.get(message.status):
            self.element.classes(color)
