"""The room's page: built once per tab, then kept current by the room's events (never rebuilt)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import uuid4

from faker import Faker
from nicegui import app, ui

from ..markdown import code_highlight_css
from ..models import Message
from ..providers import DemoProvider
from ..room import MessageRefused, Person, Room, initials
from .avatars import person_avatar_url, register_avatar_routes
from .bubble import BUBBLE_CSS, Bubble, person_avatar
from .pacing import Pacer
from .stream import ReplyTextBroadcast

# The list is a column-reverse flex box: the browser itself keeps it pinned to the bottom while the
# reader is there, and leaves it alone once they scroll up, with no message from the server.
SCROLLER_CLASSES = 'message-scroller w-full h-full overflow-y-auto flex flex-col-reverse q-pa-sm'
T = TypeVar('T')
PEOPLE_SHOWN = 30  # rows in the "Here now" list; a crowd is summed up as "and N more"
PEOPLE_CSS = ('.person-row { padding-left: 32px; min-height: 24px; line-height: 24px; white-space: nowrap; '
              'background: no-repeat left center / 24px 24px; }')
# In a reversed list, scrollTop is 0 at the bottom and grows negative towards the top.
SCROLL_JS = ('(event) => { const list = event.target; emit({bottom: list.scrollTop > -80, '
             'top: list.scrollHeight - list.clientHeight + list.scrollTop < 80}) }')


def new_identity(room: Room) -> dict[str, str]:
    """A made-up first name, preferably one nobody in the room has right now."""
    fake = Faker()
    taken = {person.name for person in room.people.values()}
    name = fake.first_name()
    for _ in range(20):
        if name not in taken:
            break
        name = fake.first_name()
    return {'id': uuid4().hex, 'name': name}


def valid_name(name: str) -> bool:
    return 0 < len(name.strip()) <= 40


class ChatPage:
    def __init__(self, room: Room, person: Person, pacer: Pacer) -> None:
        self.room = room
        self.me = person
        self.pacer = pacer  # the room's news reaches every tab at once: this spreads the work over loop turns
        self.client = ui.context.client
        self.bubbles: dict[int, Bubble] = {}
        self.at_bottom = True

        # The list fills the space between header and footer exactly, whatever their height (Quasar's
        # page container leaves room for both): the newest message never hides behind the message box.
        ui.query('.q-page').classes('relative')
        ui.query('.nicegui-content').classes('absolute-full p-0')

        with ui.header().classes('items-center gap-3 bg-grey-9 q-py-sm'):
            ui.label('Streaming chat').classes('text-lg font-medium')
            is_demo = isinstance(room.bot.provider, DemoProvider)  # orange: not a real model
            ui.badge(room.bot.provider.description, color='orange-9' if is_demo else 'teal-8') \
                .classes('text-xs').mark('provider')
            ui.space()
            with ui.button(on_click=self.rename).props('flat no-caps').classes('text-white').mark('me'):
                ui.label('Connected as').classes('text-grey-5 q-mr-xs')
                self.my_name = ui.label(person.name).classes('my-name font-medium q-mr-sm')
                self.my_initials = person_avatar(person.name, person.id, size='sm')
                ui.tooltip('Click to change your name')
            ui.button(icon='group', on_click=lambda: self.people_drawer.toggle()) \
                .props('flat round dense').classes('text-white').tooltip('Who is here')

        # Open beside the chat on a wide screen; on a phone closed, until the header's people button opens it.
        with ui.right_drawer(fixed=True).classes('bg-grey-1').props('width=200 breakpoint=700') \
                as self.people_drawer:
            self.people_title = ui.label().classes('text-sm text-grey-8 font-medium')
            self.people_list = ui.column().classes('gap-1').mark('people')
            self.more_people = ui.label().classes('text-xs text-grey-7')
        self.people_rows: dict[str, ui.label] = {}
        for person in [self.me, *(p for p in room.people.values() if p.id != self.me.id)][:PEOPLE_SHOWN]:
            self.add_person_row(person)
        self.show_people_count()

        self.scroller = ui.element('div').classes(SCROLLER_CLASSES) \
            .on('scroll', self.on_scroll, js_handler=SCROLL_JS, throttle=0.2)
        with self.scroller, ui.column().classes('w-full gap-1 q-px-sm'):
            self.older_button = ui.button('Show older messages', icon='expand_less', on_click=self.load_older) \
                .props('flat dense no-caps size=sm').classes('self-center').mark('older')
            self.older_messages = ui.column().classes('w-full gap-1')
            self.messages = ui.column().classes('w-full gap-1').mark('messages')
        with ui.page_sticky('bottom', y_offset=90):
            self.new_messages_chip = ui.button('New messages', icon='arrow_downward', on_click=self.jump_to_bottom) \
                .props('rounded dense unelevated no-caps color=primary size=sm') \
                .classes('new-messages').mark('new-messages')
            self.new_messages_chip.set_visibility(False)

        with ui.footer().classes('bg-white q-pa-sm'), ui.row().classes('w-full items-center no-wrap gap-2'):
            self.input = ui.input(placeholder='Message the room. Write @gpt to ask GPT.') \
                .props('outlined dense autofocus').classes('grow').mark('input').on('keydown.enter', self.send)
            ui.button(icon='send', on_click=self.send).props('round unelevated color=primary').mark('send')

        with self.messages:
            for message in room.recent:
                self.add(message)
        self.older_button.set_visibility(len(room.recent) >= room.settings.history_size)
        self.loading_older = False

        room.added.subscribe(lambda message: self.paced(self.on_added, message))
        room.changed.subscribe(lambda message: self.paced(self.on_changed, message))
        room.presence_changed.subscribe(lambda person: self.paced(self.on_presence_changed, person))

    # what the room tells every tab

    def paced(self, update: Callable[[T], None], news: T) -> None:
        """Apply the room's news to this tab now, or in a later turn of the event loop if every tab has news."""
        self.pacer.run(lambda: None if self.client.is_deleted else update(news))

    def add(self, message: Message) -> None:
        assert message.id is not None
        self.bubbles[message.id] = Bubble(message, mine=message.author_id == self.me.id, on_stop=self.room.bot.stop,
                                          live_text=self.room.bot.text_so_far)

    def on_added(self, message: Message) -> None:
        if message.id in self.bubbles:
            return
        with self.messages:
            self.add(message)
        if not self.at_bottom:
            self.new_messages_chip.set_visibility(True)

    def on_changed(self, message: Message) -> None:
        if message.id is not None and (bubble := self.bubbles.get(message.id)):
            bubble.change(message)

    def on_presence_changed(self, person: Person) -> None:
        """One person arrived, left or was renamed: change their row only, so a busy room stays cheap."""
        if row := self.people_rows.pop(person.id, None):
            self.people_list.remove(row)
        if person.id in self.room.people and len(self.people_rows) < PEOPLE_SHOWN:
            self.add_person_row(person)
        self.show_people_count()

    def show_people_count(self) -> None:
        self.people_title.set_text(f'Here now ({len(self.room.people)})')
        hidden = len(self.room.people) - len(self.people_rows)
        self.more_people.set_text(f'and {hidden} more' if hidden > 0 else '')

    def add_person_row(self, person: Person) -> None:
        """One element per person (every tab has this list): their name, with their avatar image as its background."""
        with self.people_list:
            row = ui.label(person.name + (' (you)' if person.id == self.me.id else '')).classes('person-row text-sm') \
                .style(f'background-image: url({person_avatar_url(person.name, person.id)})')
        self.people_rows[person.id] = row

    # what this tab's reader does

    async def send(self) -> None:
        text = self.input.value or ''
        try:
            message = await self.room.post(self.me, text)
        except MessageRefused as refusal:
            self.input.error = str(refusal)  # shown under the box until the next message goes through
            ui.notify(str(refusal), type='warning', position='top', multi_line=True)
            return
        self.input.error = None
        if message is not None and self.input.value == text:  # cleared only once stored, and only if unchanged
            self.input.value = ''
        self.jump_to_bottom()

    async def load_older(self) -> None:
        """The reader scrolled to the top: fetch the page of messages before the oldest one shown."""
        if self.loading_older or not self.bubbles:
            return
        self.loading_older = True
        try:
            older = await self.room.store.recent(self.room.settings.history_size, before_id=min(self.bubbles))
        finally:
            self.loading_older = False
        with ui.column().classes('w-full gap-1') as batch:
            for message in older:
                self.add(message)
        batch.move(self.older_messages, target_index=0)
        self.older_button.set_visibility(len(older) >= self.room.settings.history_size)

    async def on_scroll(self, event) -> None:
        self.at_bottom = bool(event.args.get('bottom'))
        if self.at_bottom:
            self.new_messages_chip.set_visibility(False)
        if event.args.get('top') and self.older_button.visible:
            await self.load_older()

    def jump_to_bottom(self) -> None:
        if not self.at_bottom:
            self.scroller.run_method('scrollTo', {'top': 0, 'behavior': 'smooth'})
        self.at_bottom = True
        self.new_messages_chip.set_visibility(False)

    def rename(self) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label('Your name in the room')
            name_input = ui.input(value=self.me.name, validation={'1 to 40 characters': valid_name}) \
                .props('autofocus').mark('name-input')

            def save() -> None:
                name = (name_input.value or '').strip()
                if not valid_name(name):
                    return
                app.storage.tab['identity'] = {'id': self.me.id, 'name': name}
                self.room.rename(self.me, name)
                self.my_name.set_text(name)
                self.my_initials.set_text(initials(name))
                dialog.close()

            name_input.on('keydown.enter', save)
            with ui.row():
                ui.button('Save', on_click=save).mark('save-name')
                ui.button('Cancel', on_click=dialog.close).props('flat')
        dialog.open()


def register_page(room: Room, broadcast: ReplyTextBroadcast, pacer: Pacer) -> None:
    ui.add_css(code_highlight_css() + BUBBLE_CSS + PEOPLE_CSS, shared=True)
    register_avatar_routes()

    @ui.page('/', title='Streaming chat')
    async def index() -> None:
        client = ui.context.client
        await client.connected()  # the tab's storage (who this tab is) needs the socket
        await room.ready.wait()  # NiceGUI runs start-up hooks in the background: a tab may arrive first
        identity = app.storage.tab.get('identity') or new_identity(room)
        app.storage.tab['identity'] = identity
        person = room.join(identity['id'], identity['name'], client.id)
        client.on_delete(lambda: room.leave(person.id, client.id))
        ChatPage(room, person, pacer)
        broadcast.add_tab(client.id)  # growing replies reach this tab from now on
        client.on_delete(lambda: broadcast.remove_tab(client.id))
