"""How a growing reply reaches the tabs: one socket message per beat for all of them, not one element per tab.

Growing a text the usual NiceGUI way (an element or a prop per piece, in every tab) costs a Python object, a diff and
a JSON encoding per tab per piece. Here each beat's `grew` event (reply.py keeps the beat) becomes ONE socket
message, {reply id: [offset, new text, and the blocks it finished, rendered once]}, which socket.io encodes once for
every tab; `reply_text.js` in each tab appends its part. What a tab misses heals: a piece's offset shows a gap (a
dropped socket), and the tab asks for the reply so far; so does one that missed the end, which every tab is told
through NiceGUI's own channel. A tab opened mid-reply gets the reply so far when its bubble is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import background_tasks, core
from nicegui.element import Element

from ..markdown import LiveMarkdown, render_markdown
from ..models import Message
from ..reply import Growth
from ..room import Room

EVENT_NAME = 'grew'  # the socket message reply_text.js listens for; short, as it goes out 20 times a second


def reply_state(so_far: LiveMarkdown | None, message: Message) -> dict[str, Any]:
    """What reply_text.js shows of a reply: its finished blocks rendered, where they end, and the text after them.
    `so_far`: the reply so far, from its owner; without it, the message as stored (still being written elsewhere,
    and not yet followed here, or ended)."""
    if so_far is None and not message.status.in_progress:  # ended: every block is finished
        return {'html': render_markdown(message.body), 'done': len(message.body), 'tail': ''}
    so_far = so_far or LiveMarkdown(message.body)
    return {'html': so_far.html, 'done': so_far.done, 'tail': so_far.text[so_far.done:]}


# reply_text.js imports reply_blocks.js by name: NiceGUI puts each of an element's `dependencies` in the page's
# import map (under its file's stem) and serves it from /_nicegui/<version>/libraries/, on the page's own origin.
class ReplyText(Element, component='reply_text.js', dependencies=['reply_blocks.js']):
    """A reply's text as one tab shows it: the finished blocks formatted, the block being written as text."""

    def __init__(self, message_id: int, state: Callable[[], dict[str, Any]], *, live: bool,
                 may_resync: Callable[[int], bool] = lambda message_id: True) -> None:
        super().__init__()
        self.message_id = message_id
        self.state = state  # the reply so far, from its owner (or, once it ended, its final text)
        self.may_resync = may_resync  # the tab's own allowance, for this reply and over all its replies
        self._props.update({**state(), 'live': live, 'message-id': message_id})
        self.on('resync', self.resync)

    def resync(self) -> None:
        """A tab that noticed a gap asks for the reply so far (rare: after a dropped connection; it asks again, ever
        more slowly, until an answer comes). Each answer is the whole reply, so the tab's allowance bounds them."""
        if self.may_resync(self.message_id):
            self.run_method('reset', self.state())

    def finish(self) -> None:
        """The reply ended: each tab checks that it has every block (it asks again if not). The final state goes into
        this element's props unsent, for a page that draws it again; the tabs already show it."""
        state = self.state()
        with self.props.suspend_updates():
            self.props.update(state, live=False)
        self.run_method('finish', state['done'])


class ReplyTextBroadcast:
    """Sends each beat's growth of the replies to every open room tab in one socket message."""

    def __init__(self, room: Room) -> None:
        self.client_ids: set[str] = set()  # the tabs showing the room; socket.io has a "room" named after each
        room.grew.subscribe(self.send)

    def add_tab(self, client_id: str) -> None:
        self.client_ids.add(client_id)

    def remove_tab(self, client_id: str) -> None:
        self.client_ids.discard(client_id)

    def send(self, growth: dict[int, Growth]) -> None:
        if self.client_ids:  # socket.io encodes the message once and queues the same bytes on every tab's socket
            pieces = {message_id: grown.wire() for message_id, grown in growth.items()}
            background_tasks.create(core.sio.emit(EVENT_NAME, pieces, room=list(self.client_ids)),
                                    name='send reply text')
