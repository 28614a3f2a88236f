"""One message as one tab shows it. A reply in progress grows by small appended pieces of text;
when it ends it is rendered once, as Markdown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from nicegui import ui
from nicegui.elements.mixins.text_element import TextElement

from ..markdown import render_markdown
from ..models import Kind, Message, Status
from ..room import avatar_color, initials

PIECES_PER_GROUP = 16  # pieces sit in small groups, so adding one re-sends a short list of ids, not all of them

STATUS_NOTES = {
    Status.STOPPED: ('stop_circle', 'Stopped', 'text-grey-7'),
    Status.ERROR: ('error', '', 'text-negative'),
    Status.INTERRUPTED: ('link_off', 'Interrupted', 'text-warning'),
}


class TextPiece(TextElement):
    """A bare <span> of text: the cheapest element NiceGUI can send for a delta."""

    def __init__(self, text: str) -> None:
        super().__init__(tag='span', text=text)


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
    def __init__(self, message: Message, *, mine: bool, on_stop: Callable[[int], None]) -> None:
        self.message_id = message.id
        self.is_reply = message.kind == Kind.BOT
        self.pieces_in_group = PIECES_PER_GROUP
        with ui.chat_message(name=message.author, stamp=local_time(message.created_at), sent=mine) \
                .classes('w-full').mark(f'message-{message.id}') \
                .props(f'data-message-id={message.id} data-kind={message.kind}') as self.element:
            with self.element.add_slot('avatar'):
                if self.is_reply:
                    ui.avatar('smart_toy', color='grey-8', text_color='white', size='md').classes('q-mx-sm')
                else:
                    person_avatar(message.author, message.author_id).parent_slot.parent.classes('q-mx-sm')
            with ui.element('div'):  # one child, so Quasar draws one bubble (it draws one per child)
                self.body = ui.element('div').classes('message-body')
                with ui.row().classes('items-center gap-1 text-xs text-grey-7') as self.status_row:
                    self.spinner = ui.spinner('dots', size='sm')
                    self.status_label = ui.label().classes('message-status')
                    self.stop_button = ui.button('Stop', icon='stop', on_click=lambda: on_stop(self.message_id)) \
                        .props('flat dense size=sm no-caps').mark('stop')
        self.show(message)

    def change(self, message: Message) -> None:
        """A reply changed status: while it runs only the status line changes; at its end it is drawn anew."""
        if message.status.in_progress:
            self._show_status(message)
        else:
            self.show(message)

    def show(self, message: Message) -> None:
        """Draw the message in its current state (a reply in progress shows its text so far, as plain text)."""
        self.body.clear()
        in_progress = message.status.in_progress
        if not self.is_reply:
            with self.body:
                ui.label(message.body).classes('whitespace-pre-wrap break-words')
        elif in_progress:
            self.body.classes('whitespace-pre-wrap break-words')
            self.pieces_in_group = PIECES_PER_GROUP
            if message.body:
                self.append(message.body)
        else:
            self.body.classes(remove='whitespace-pre-wrap')
            with self.body:
                if message.body:
                    ui.html(render_markdown(message.body), sanitize=True).classes('nicegui-markdown w-full')
        self._show_status(message)

    def append(self, text: str) -> None:
        if self.pieces_in_group >= PIECES_PER_GROUP:
            with self.body:
                self.group = ui.element('span')
            self.pieces_in_group = 0
        with self.group:
            TextPiece(text)
        self.pieces_in_group += 1

    def _show_status(self, message: Message) -> None:
        in_progress = message.status.in_progress
        self.element.props(f'data-status={message.status}')  # for browser tests and anyone styling the page
        self.status_row.set_visibility(self.is_reply)
        self.spinner.set_visibility(in_progress)
        self.stop_button.set_visibility(in_progress)
        self.status_row.classes(remove='text-negative text-warning text-grey-7')
        if message.status == Status.THINKING:
            self.status_label.set_text('thinking…')
        elif message.status == Status.STREAMING:
            self.status_label.set_text('writing…')
        elif message.status in STATUS_NOTES:
            _, label, color = STATUS_NOTES[message.status]
            text = ' '.join(part for part in (label, message.error or '') if part)
            self.status_label.set_text(text)
            self.status_row.classes(color)
        else:
            self.status_label.set_text(reply_details(message))
