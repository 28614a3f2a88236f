"""One message as one tab shows it. A reply in progress is plain text that grows in the browser (see stream.py);
when it ends it is rendered once, as Markdown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from nicegui import ui

from ..markdown import render_markdown
from ..models import Kind, Message, Status
from ..room import avatar_color, initials
from .stream import StreamingText

STATUS_NOTES = {
    Status.STOPPED: ('stop_circle', 'Stopped', 'text-grey-7'),
    Status.ERROR: ('error', '', 'text-negative'),
    Status.INTERRUPTED: ('link_off', 'Interrupted', 'text-warning'),
}


def person_avatar(name: str, person_id: str, size: str = 'md') -> ui.label:
    """A coloured circle with the person's initials; returns the label, so a new name can update it."""
    with ui.avatar(color=avatar_color(person_id), text_color='white', size=size):
        return ui.label(initials(name)).classes('text-sm')


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


class Bubble:
    def __init__(self, message: Message, *, mine: bool, on_stop: Callable[[int], None],
                 live_text: Callable[[int], str | None]) -> None:
        self.message_id = message.id
        self.on_stop = on_stop
        self.live_text = live_text  # a reply in progress: the text tabs have been sent so far
        self.message = message
        self.is_reply = message.kind == Kind.BOT
        self.live_controls: ui.row | None = None
        # A person's message is plain text, and Quasar's own text part is the cheapest way to show it.
        text = None if self.is_reply else message.body
        with ui.chat_message(text, name=message.author, stamp=local_time(message.created_at), sent=mine) \
                .classes('w-full').mark(f'message-{message.id}') \
                .props(f'data-message-id={message.id} data-kind={message.kind}') as self.element:
            with self.element.add_slot('avatar'):
                if self.is_reply:
                    ui.avatar('smart_toy', color='grey-8', text_color='white', size='md').classes('q-mx-sm')
                else:
                    person_avatar(message.author, message.author_id).parent_slot.parent.classes('q-mx-sm')
            if not self.is_reply:
                self.element.default_slot.children[0].classes('message-body')
                return
            with ui.element('div'):  # one child, so Quasar draws one bubble (it draws one per child)
                self.body = ui.element('div').classes('message-body')
                with ui.row().classes('items-center gap-1 text-xs text-grey-7') as self.status_row:
                    self.status_label = ui.label().classes('message-status')
        self.show(message)

    def change(self, message: Message) -> None:
        """A reply changed status: while it runs only the status line changes; at its end it is drawn anew."""
        if message.status.in_progress:
            self._show_status(message)
        else:
            self.show(message)

    def show(self, message: Message) -> None:
        """Draw a reply in its current state: the text so far as plain text while it runs, else Markdown."""
        self.message = message
        self.body.clear()
        with self.body:
            if message.status.in_progress:
                self.body.classes('whitespace-pre-wrap break-words')
                assert message.id is not None
                StreamingText(message.id, self.text_so_far(), text_so_far=self.text_so_far)
            else:
                self.body.classes(remove='whitespace-pre-wrap')
                if message.body:
                    ui.html(render_markdown(message.body), sanitize=True).classes('nicegui-markdown w-full')
        self._show_status(message)

    def text_so_far(self) -> str:
        """The bot's own copy, not this bubble's message: a bubble loaded with older messages holds a stale one."""
        assert self.message_id is not None
        live = self.live_text(self.message_id)
        return self.message.body if live is None else live

    def _show_status(self, message: Message) -> None:
        self.element.props(f'data-status={message.status}')  # for browser tests and anyone styling the page
        if message.status.in_progress and self.live_controls is None:
            with self.status_row, ui.row().classes('items-center gap-1') as self.live_controls:
                ui.spinner('dots', size='sm')
                ui.button('Stop', icon='stop', on_click=lambda: self.on_stop(self.message_id)) \
                    .props('flat dense size=sm no-caps').mark('stop')
            self.live_controls.move(target_index=0)
        elif not message.status.in_progress and self.live_controls is not None:
            self.live_controls.delete()
            self.live_controls = None
        self.status_row.classes(remove='text-negative text-warning text-grey-7')
        if message.status == Status.THINKING:
            self.status_label.set_text('thinking…')
        elif message.status == Status.STREAMING:
            self.status_label.set_text('writing…')
        elif message.status in STATUS_NOTES:
            _, label, color = STATUS_NOTES[message.status]
            self.status_label.set_text(' '.join(part for part in (label, message.error or '') if part))
            self.status_row.classes(color)
        else:
            self.status_label.set_text(reply_details(message))
