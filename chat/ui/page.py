"""The room's page: built once per tab, then kept current by the room's events (never rebuilt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nicegui import app, ui

from ..limits import MessageRefused, TabAllowance
from ..markdown import code_highlight_css
from ..models import Message
from ..performance.pacing import Pacer
from ..presence import Person
from ..room import Room
from .avatars import register_avatar_routes
from .bubble import Bubble
from .header import Header
from .people import BotSuggestions, PeopleList, identity_on_arrival, new_identity
from .scrolling import MessageList
from .stream import ReplyTextBroadcast

T = TypeVar('T')
STYLE_SHEET = Path(__file__).with_name('style.css')


class ChatPage:
    """One tab's view of the room: built once when the tab opens, then kept current by the room's events."""

    def __init__(self, room: Room, person: Person, pacer: Pacer) -> None:
        self.room = room
        self.me = person
        self.pacer = pacer  # the room's news reaches every tab at once: this spreads the work over loop turns
        self.client = ui.context.client
        self.bubbles: dict[int, Bubble] = {}
        self.allowance = TabAllowance()  # what this tab may ask of the server, however its page is driven
        self.sending = False  # a message of this tab is being stored: a second press (Enter and click) waits for it
        # The list fills the space between header and footer exactly, whatever their height (Quasar's
        # page container leaves room for both): the newest message never hides behind the message box.
        ui.query('.q-page').classes('relative')
        ui.query('.nicegui-content').classes('absolute-full p-0')
        self.header = Header(room, person, toggle_people=lambda: self.people.drawer.toggle())
        self.people = PeopleList(room, person)
        self.build_message_list()
        self.build_footer()
        room.added.subscribe(lambda message: self.paced(self.on_added, message))
        room.changed.subscribe(lambda message: self.paced(self.on_changed, message))
        room.presence.changed.subscribe(lambda person: self.paced(self.people.on_presence_changed, person))
        if self.header.spending is not None:  # as it changes: a reply's end here or elsewhere, a check, a new day
            room.spending_changed.subscribe(lambda spent: self.paced(self.header.show_spending, spent))

    def build_message_list(self) -> None:
        self.message_list = MessageList(self.room, self.room.recent, make_bubble=self.add,
                                        oldest_shown=lambda: min(self.bubbles, default=None))

    def build_footer(self) -> None:
        with ui.footer().classes('bg-white q-pa-sm'), ui.row().classes('w-full items-center no-wrap gap-2'):
            self.input = ui.input().props('outlined dense autofocus').classes('grow').mark('input') \
                .on('keydown.enter', self.send)
            self.suggestions = BotSuggestions(self.input, list(self.room.bots))  # and the box names them
            ui.button(icon='send', on_click=self.send).props('round unelevated color=primary').mark('send')

    # what the room tells every tab

    def paced(self, update: Callable[[T], None], news: T) -> None:
        """Apply the room's news to this tab now, or in a later turn of the event loop if every tab has news."""
        self.pacer.run(lambda: None if self.client.is_deleted else update(news))

    def add(self, message: Message) -> None:
        assert message.id is not None
        self.bubbles[message.id] = Bubble(message, mine=message.author_id == self.me.id, on_stop=self.stop_reply,
                                          reply_so_far=self.room.reply_so_far, may_resync=self.allowance.may_resync)

    def on_added(self, message: Message) -> None:
        if message.id not in self.bubbles:
            self.message_list.append(message)

    def on_changed(self, message: Message) -> None:
        if message.id is not None and (bubble := self.bubbles.get(message.id)):
            bubble.change(message)

    # what this tab's reader does

    async def send(self) -> None:
        if self.sending:  # pressed again before the first was stored: the same text would be sent twice
            return
        text = self.input.value if isinstance(self.input.value, str) else ''  # a raw socket client may send anything
        self.sending = True
        try:
            message = await self.room.post(self.me, text)
        except MessageRefused as refusal:
            self.input.error = str(refusal)  # shown under the box until the next message goes through
            ui.notify(str(refusal), type='warning', position='top', multi_line=True)
            return
        finally:
            self.sending = False
        self.input.error = None
        if message is not None and self.input.value == text:  # cleared only once stored, and only if unchanged
            self.input.value = ''
        self.message_list.jump_to_bottom()

    def stop_reply(self, message_id: int) -> None:
        """The Stop button: the reply ends in every tab, saying who stopped it (a few presses a second at most)."""
        if self.allowance.may_stop():
            self.room.stop(message_id, self.me)


def register_page(room: Room, broadcast: ReplyTextBroadcast, pacer: Pacer) -> None:
    ui.add_css(code_highlight_css() + STYLE_SHEET.read_text(encoding='utf-8'), shared=True)
    register_avatar_routes()

    @ui.page('/', title='Streaming chat')
    async def index() -> None:
        client = ui.context.client
        await room.ready.wait()  # NiceGUI runs start-up hooks in the background: a tab may arrive first
        await client.connected()  # the tab's storage (who this tab is) needs the socket: nothing awaited after this
        if client.is_deleted:  # it never connected (curl, a link preview, a tab closed at once) and was pruned
            return
        identity = identity_on_arrival(app.storage.tab.get('identity') or new_identity(room), room)
        app.storage.tab['identity'] = identity
        person = room.presence.join(identity['id'], identity['name'], client.id, str(app.storage.browser.get('id', '')))
        client.on_delete(lambda: room.presence.leave(person.id, client.id))
        ChatPage(room, person, pacer)
        broadcast.add_tab(client.id)  # growing replies reach this tab from now on
        client.on_delete(lambda: broadcast.remove_tab(client.id))
