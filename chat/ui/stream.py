"""How a growing reply reaches the tabs: one socket message per beat for all of them, not one element per tab.

The straightforward NiceGUI way to grow a text is to add an element (or update a prop) in every tab's page, which
costs a Python object, a diff and a JSON encoding per tab per piece of text. Here the room's `grew` event, which
carries one beat's new text of every reply (reply.py keeps the beat), becomes a single socket message
({reply id: [offset, new text]}), encoded once and handed to every tab's socket by socket.io; `streaming_text.js`
in each tab appends its part.

What a tab would miss this way is healed, not lost: each piece carries its offset, so a tab that missed one (its
socket dropped for a moment) sees the gap and asks for the text so far; a tab opened mid-reply starts from the text
so far; and when the reply ends every tab draws the finished text from the server anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from nicegui import background_tasks, core
from nicegui.element import Element

from ..room import Room

EVENT_NAME = 'grew'  # the socket message streaming_text.js listens for; short, as it goes out 20 times a second


class StreamingText(Element, component='streaming_text.js'):
    """A reply's text while it is being written, as one tab shows it (a <span> that streaming_text.js appends to)."""

    def __init__(self, message_id: int, text: str, text_so_far: Callable[[], str]) -> None:
        super().__init__()
        self._props['message-id'] = message_id
        self._props['text'] = text
        # A tab that noticed a gap asks for the whole text so far (rare: only after a dropped connection).
        self.on('resync', lambda: self.run_method('reset', text_so_far()))


class ReplyTextBroadcast:
    """Sends each beat's new reply text to every open room tab in one socket message."""

    def __init__(self, room: Room) -> None:
        self.client_ids: set[str] = set()  # the tabs showing the room; socket.io has a "room" named after each
        room.grew.subscribe(self.send)

    def add_tab(self, client_id: str) -> None:
        self.client_ids.add(client_id)

    def remove_tab(self, client_id: str) -> None:
        self.client_ids.discard(client_id)

    def send(self, pieces: dict[int, tuple[int, str]]) -> None:
        if self.client_ids:  # socket.io encodes the message once and queues the same bytes on every tab's socket
            background_tasks.create(core.sio.emit(EVENT_NAME, pieces, room=list(self.client_ids)),
                                    name='send reply text')
