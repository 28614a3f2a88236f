"""The list of messages as a reader scrolls it: pinned to the bottom while they are there, a "New messages" button
while they read further up, and older messages loaded when they reach the top."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from nicegui import ui
from nicegui.events import GenericEventArguments

from ..limits import RateLimit
from ..models import Message
from ..room import Room

# A column-reverse flex box: the browser itself keeps it pinned to the bottom while the reader is there, and leaves
# it alone once they scroll up, with no message from the server.
SCROLLER_CLASSES = 'message-scroller w-full h-full overflow-y-auto flex flex-col-reverse q-pa-sm'
OLDER_PAGES = 20  # pages of older messages one tab may load: 2,000 messages, more than a reader scrolls through
# In a reversed list, scrollTop is 0 at the bottom and grows negative towards the top.
SCROLL_JS = ('(event) => { const list = event.target; emit({bottom: list.scrollTop > -80, '
             'top: list.scrollHeight - list.clientHeight + list.scrollTop < 80}) }')


class MessageList:
    """One tab's scrolling list. `make_bubble` makes a message's bubble where it is called (the page keeps the
    bubbles); `oldest_shown` is the id of the oldest message shown, before which the next page of older messages
    ends."""

    def __init__(self, room: Room, recent: Iterable[Message], *, make_bubble: Callable[[Message], None],
                 oldest_shown: Callable[[], int | None]) -> None:
        self.room = room
        self.make_bubble = make_bubble
        self.oldest_shown = oldest_shown
        self.client = ui.context.client
        self.at_bottom = True
        self.loading_older = False
        self.older_pages = 0
        self.older_rate = RateLimit(1, 0.5)  # what a tab may ask of the database by scrolling
        self.scroller = ui.element('div').classes(SCROLLER_CLASSES) \
            .on('scroll', self.on_scroll, js_handler=SCROLL_JS, throttle=0.2)
        with self.scroller, ui.column().classes('w-full gap-1 q-px-sm'):
            self.older_button = ui.button('Show older messages', icon='expand_less', on_click=self.load_older) \
                .props('flat dense no-caps size=sm').classes('self-center').mark('older')
            self.older_messages = ui.column().classes('w-full gap-1')
            self.messages = ui.column().classes('w-full gap-1').mark('messages')
        shown = list(recent)
        with self.messages:
            for message in shown:
                make_bubble(message)
        self.older_button.set_visibility(len(shown) >= room.settings.history_size)
        with ui.page_sticky('bottom', y_offset=90):
            self.new_messages_chip = ui.button('New messages', icon='arrow_downward', on_click=self.jump_to_bottom) \
                .props('rounded dense unelevated no-caps color=primary size=sm') \
                .classes('new-messages').mark('new-messages')
            self.new_messages_chip.set_visibility(False)

    def append(self, message: Message) -> None:
        """A new message, at the bottom; a reader further up is offered a jump to it."""
        with self.messages:
            self.make_bubble(message)
        if not self.at_bottom:
            self.new_messages_chip.set_visibility(True)

    async def load_older(self) -> None:
        """The reader scrolled to the top: fetch the page of messages before the oldest one shown (a page
        at most every half second, and at most OLDER_PAGES of them: a tab that asks for more is not a reader)."""
        oldest = self.oldest_shown()
        if self.loading_older or oldest is None or self.older_pages >= OLDER_PAGES:
            return
        self.loading_older = True  # until the page is in place: scrolling meanwhile asks for the same page
        try:
            await asyncio.sleep(self.older_rate.wait('older'))  # sooner than half a second after the last: in its turn
            self.older_rate.record('older')
            self.older_pages += 1
            older = await self.room.store.recent(self.room.settings.history_size, before_id=oldest)
            if self.client.is_deleted:  # the tab closed meanwhile
                return
            with self.older_messages:  # above the pages shown already, from its first bubble: always in order
                batch = ui.column().classes('w-full gap-1')
            batch.move(self.older_messages, target_index=0)
            with batch:
                for number, message in enumerate(older, 1):
                    self.make_bubble(message)
                    if number % 10 == 0:
                        await asyncio.sleep(0)  # a hundred bubbles take ~80 ms: the other tabs' news goes between
        finally:
            self.loading_older = False
        self.older_button.set_visibility(len(older) >= self.room.settings.history_size and
                                         self.older_pages < OLDER_PAGES)

    async def on_scroll(self, event: GenericEventArguments) -> None:
        where = event.args if isinstance(event.args, dict) else {}  # what SCROLL_JS sends, or nothing
        self.at_bottom = bool(where.get('bottom'))
        if self.at_bottom:
            self.new_messages_chip.set_visibility(False)
        if where.get('top') and self.older_button.visible:
            await self.load_older()

    def jump_to_bottom(self) -> None:
        if not self.at_bottom:
            self.scroller.run_method('scrollTo', {'top': 0, 'behavior': 'smooth'})
        self.at_bottom = True
        self.new_messages_chip.set_visibility(False)
