"""One message as one tab shows it: a Quasar chat message with as few elements inside as possible.

A burst of questions builds new bubbles in every open tab at once, so a bubble is kept small: the avatar is an image
URL (avatars.py) and the status line is the chat message's `stamp`. A person's message is 2 elements; a reply is 4
while it is written (its text grows in the browser, see stream.py, beside a Stop button) and 2 once it is done and
drawn, once, as Markdown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from nicegui import ui

from ..markdown import render_markdown
from ..models import Kind, Message, Status
from .avatars import BOT_AVATAR_URL, person_avatar_url
from .stream import StreamingText

STATUS_LABELS = {Status.WAITING: 'waiting for the local model…', Status.THINKING: 'thinking…',
                 Status.STREAMING: 'writing…', Status.STOPPED: 'Stopped', Status.INTERRUPTED: 'Interrupted',
                 Status.ERROR: ''}
STATUS_COLORS = {Status.ERROR: 'message-error', Status.INTERRUPTED: 'message-warning'}
# Quasar puts the stamp under the text; these colour it for a reply that did not end well.
BUBBLE_CSS = ('.message-plain { white-space: pre-wrap; overflow-wrap: anywhere; } '
              '.message-error .q-message-stamp { color: var(--q-negative); opacity: 1; } '
              '.message-warning .q-message-stamp { color: var(--q-warning); opacity: 1; }')


def local_time(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC times
    return aware.astimezone().strftime('%H:%M')


def reply_details(message: Message) -> str:
    parts = [message.model or '']
    if message.completion_tokens is not None:
        parts.append(f'{message.prompt_tokens} + {message.completion_tokens} tokens')
    if message.first_token_ms is not None:
        parts.append(f'first token {message.first_token_ms / 1000:.1f} s')
    if message.duration_ms is not None:
        parts.append(f'{message.duration_ms / 1000:.1f} s in all')
    return ' · '.join(part for part in parts if part)


def status_line(message: Message) -> str:
    """What the stamp under a message says: the time, then how a reply is doing or how it went."""
    if message.kind != Kind.BOT:
        return local_time(message.created_at)
    if message.status in STATUS_LABELS:
        note = ' '.join(part for part in (STATUS_LABELS[message.status], message.error or '') if part)
    else:
        note = reply_details(message)
    return ' · '.join(part for part in (local_time(message.created_at), note) if part)


class Bubble:
    def __init__(self, message: Message, *, mine: bool, on_stop: Callable[[int], None],
                 reply_text: Callable[[int], str | None]) -> None:
        self.message_id = message.id
        self.on_stop = on_stop
        self.reply_text = reply_text  # asks a reply in progress for its text so far (None once it has ended)
        self.message = message
        self.is_reply = message.kind == Kind.BOT
        avatar = BOT_AVATAR_URL if self.is_reply else person_avatar_url(message.author, message.author_id)
        # A person's message is plain text: Quasar's own text part (one child, escaped) is the cheapest way to show it.
        text = None if self.is_reply else message.body
        self.element = ui.chat_message(text, name=message.author, stamp=status_line(message), avatar=avatar,
                                       sent=mine).classes('w-full').mark(f'message-{message.id}')
        self.element.props['data-message-id'] = str(message.id)  # an HTML attribute: text
        self.element.props['data-kind'] = message.kind
        if self.is_reply:
            self.show(message)
        else:
            self.element.default_slot.children[0].classes('message-body message-plain')

    def change(self, message: Message) -> None:
        """A reply changed status: while it runs only the status line changes; at its end it is drawn anew."""
        if message.status.in_progress:
            self.show_status(message)
        else:
            self.show(message)

    def show(self, message: Message) -> None:
        """Draw a reply in its current state: the text so far as plain text while it runs, else Markdown."""
        self.message = message
        self.element.clear()
        with self.element:
            if message.status.in_progress:
                assert message.id is not None
                with ui.element('div'):  # one child, so Quasar draws one bubble (it draws one per child)
                    StreamingText(message.id, self.text_so_far(), text_so_far=self.text_so_far) \
                        .classes('message-body message-plain')
                    ui.button('Stop', icon='stop', on_click=lambda: self.on_stop(self.message_id)) \
                        .props('flat dense size=sm no-caps').classes('q-mt-xs').mark('stop')
            else:
                ui.html(render_markdown(message.body), sanitize=True).classes('message-body nicegui-markdown')
        self.show_status(message)

    def text_so_far(self) -> str:
        """A reply's text so far, from its owner (the message's body is written only at the end)."""
        assert self.message_id is not None
        text = self.reply_text(self.message_id)
        return self.message.body if text is None else text

    def show_status(self, message: Message) -> None:
        self.element.props['stamp'] = status_line(message)
        self.element.props['data-status'] = message.status  # for browser tests and anyone styling the page
        self.element.classes(remove=' '.join(STATUS_COLORS.values()))
        if color := STATUS_COLORS.get(message.status):
            self.element.classes(color)
