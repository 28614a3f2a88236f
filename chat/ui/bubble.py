"""One message as one tab shows it: a Quasar chat message with as few elements inside as possible.

A burst of questions builds new bubbles in every open tab at once, so a bubble is kept small: the avatar is an image
URL (avatars.py) and the status line is the chat message's `stamp`. A person's message is 2 elements; a reply is 4
while it is written (its text grows in the browser, see stream.py, beside a Stop button) and 3 once it has ended.
A reply's text is drawn by the same component live and finished, so both look the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

from ..markdown import LiveMarkdown
from ..models import Kind, Message
from .avatars import BOT_AVATAR_URL, person_avatar_url
from .status import STATUS_COLORS, status_line
from .stream import ReplyText, reply_state


class Bubble:
    def __init__(self, message: Message, *, mine: bool, on_stop: Callable[[int], None],
                 reply_so_far: Callable[[int], LiveMarkdown | None], may_resync: Callable[[int], bool]) -> None:
        self.message = message
        self.reply_so_far = reply_so_far  # asks a reply in progress how far it got (None once it has ended)
        self.stop_button: ui.button | None = None
        is_reply = message.kind == Kind.BOT
        avatar = BOT_AVATAR_URL if is_reply else person_avatar_url(message.author, message.author_id)
        # A person's message is plain text: Quasar's own text part (one child, escaped) is the cheapest way to show it.
        plain_text = None if is_reply else message.body
        self.element = ui.chat_message(plain_text, name=message.author, stamp=status_line(message), avatar=avatar,
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
