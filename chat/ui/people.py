"""Who is here, and who you are: the room's bots and the "Here now" list, your name in the header and choosing
another one, and the bots offered as you type @.

A tab's identity (a made-up name and an id) lives in the tab's storage, so a reload keeps it and a new tab is a new
person. The list changes one row at a time, because every tab has one and people come and go all the time.
"""

from __future__ import annotations

import re
import unicodedata
from uuid import uuid4

from faker import Faker
from nicegui import app, ui

from ..limits import counted
from ..presence import Person
from ..room import Room
from .avatars import BOT_AVATAR_URL, avatar_color, initials, person_avatar_url

PEOPLE_SHOWN = 30  # rows in the "Here now" list; a crowd is summed up as "and N more"


def new_identity(room: Room) -> dict[str, str]:
    """A made-up first name, preferably one nobody in the room has right now."""
    fake = Faker()
    taken = {name_skeleton(person.name) for person in room.presence.people.values()}
    name = fake.first_name()
    for _ in range(20):
        if name_skeleton(name) not in taken:
            break
        name = fake.first_name()
    return {'id': uuid4().hex, 'name': name}


def identity_on_arrival(identity: dict[str, str], room: Room) -> dict[str, str]:
    """A tab that comes back keeps its stored name if the rules still allow it; else (someone took it meanwhile, or
    it was stored under older rules) it gets a made-up one, and stays the same person."""
    me = room.presence.people.get(identity['id']) or Person(identity['id'], identity['name'])
    if name_problem(identity['name'], room, me) is None:
        return identity
    return {'id': identity['id'], 'name': new_identity(room)['name']}


# The name rules. A name is shown to everyone, beside what its person writes: it must be visible, and it must not
# pass for a bot or for someone else in the room.
INVISIBLE = {'Cc', 'Cf', 'Cs', 'Co', 'Cn', 'Zl', 'Zp'}  # control and format characters (zero-width, bidi), breaks
# Letters and symbols that draw nothing: Hangul fillers, the blank braille pattern, a blank musical notehead.
BLANKS = set('\u115f\u1160\u3164\uffa0\u2800\U0001d159')
MARKS_ON_ONE_LETTER = 3  # combining accents in a row: Vietnamese or Thai need two or three, a pile needs more
# Letters of other scripts that look like Latin ones (after case folding: a Greek capital Ι is ι), and Latin ones
# that look like each other in many fonts (I and l, 0 and O). Not all of Unicode's confusables: the common ones.
LOOKALIKES = str.maketrans({
    'а': 'a', 'в': 'b', 'е': 'e', 'һ': 'h', 'н': 'h', 'і': 'i', 'ј': 'j', 'к': 'k', 'м': 'm', 'о': 'o',
    'р': 'p', 'ԛ': 'q', 'с': 'c', 'ѕ': 's', 'т': 't', 'у': 'y', 'ԝ': 'w', 'х': 'x', 'ԁ': 'd', 'ѵ': 'v',
    'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'h', 'ι': 'i', 'κ': 'k', 'μ': 'm', 'ν': 'v', 'ο': 'o', 'ρ': 'p',
    'τ': 't', 'υ': 'y', 'χ': 'x', 'ζ': 'z', 'ı': 'i', 'ɡ': 'g', 'l': 'i', '1': 'i', '|': 'i', '0': 'o',
})


def name_skeleton(name: str) -> str:
    """What a name looks like, to tell names apart: compatibility forms folded (ｇｐｔ is gpt), case ignored, and
    lookalike letters read as one (gрt, with a Cyrillic р, is gpt; Ιan, with a Greek Ι, is Ian; rn is m)."""
    return unicodedata.normalize('NFKC', name).casefold().translate(LOOKALIKES).replace('rn', 'm')


def visible_name_problem(name: str) -> str | None:
    """Why `name` would not show as a name (it is stripped first), or None."""
    if any(unicodedata.category(character) in INVISIBLE for character in name):
        return 'No control or invisible characters, please'
    name = name.strip()
    if not 1 <= len(name) <= 40:
        return '1 to 40 characters'
    if not any(unicodedata.category(character)[0] in 'LNPS' and character not in BLANKS for character in name):
        return 'A name needs a letter, digit or sign that shows'
    marks = 0
    for character in unicodedata.normalize('NFC', name):
        marks = marks + 1 if unicodedata.category(character)[0] == 'M' else 0
        if marks > MARKS_ON_ONE_LETTER:
            return 'Too many accents on one letter'
    return None


def name_problem(name: str, room: Room, me: Person) -> str | None:
    """Why `name` cannot be this person's name, or None."""
    if not isinstance(name, str):
        return 'No control or invisible characters, please'
    if problem := visible_name_problem(name):
        return problem
    looks = name_skeleton(name.strip())
    if any(looks in {name_skeleton(bot.name), name_skeleton(f'@{bot.name}'), name_skeleton(bot.author)}
           for bot in room.bots.values()):
        return "That is a bot's name"
    if any(name_skeleton(person.name) == looks for person in room.presence.people.values() if person.id != me.id):
        return 'Someone here has that name'
    return None


class MyName:
    """The header's "Connected as": this tab's name and initials; a click asks for a new name (in a dialog built at
    the first click, then kept: most tabs never rename, and every element costs each tab memory)."""

    def __init__(self, room: Room, me: Person) -> None:
        self.room = room
        self.me = me
        self.container = ui.context.slot.parent  # the header: where the dialog goes when it is first needed
        self.dialog: ui.dialog | None = None
        with ui.button(on_click=self.ask).props('flat no-caps').classes('text-white').mark('me'):
            ui.label('Connected as').classes('text-grey-5 q-mr-xs')
            self.name = ui.label(me.name).classes('my-name font-medium q-mr-sm')
            with ui.avatar(color=avatar_color(me.id), text_color='white', size='sm'):
                self.initials = ui.label(initials(me.name)).classes('text-sm')
            ui.tooltip('Click to change your name')

    def build_dialog(self) -> ui.dialog:
        with self.container, ui.dialog() as dialog, ui.card():
            ui.label('Your name in the room')
            self.input = ui.input(validation=lambda name: name_problem(name, self.room, self.me)) \
                .props('autofocus').mark('name-input').on('keydown.enter', self.save)
            with ui.row():
                ui.button('Save', on_click=self.save).mark('save-name')
                ui.button('Cancel', on_click=dialog.close).props('flat')
        return dialog

    def ask(self) -> None:
        self.dialog = self.dialog or self.build_dialog()
        self.input.value = self.me.name
        self.dialog.open()

    def save(self) -> None:
        name = self.input.value
        if name_problem(name, self.room, self.me):
            return  # the box says why
        renames = self.room.limits.rename_rate
        if wait := renames.wait(self.me.id):
            self.input.error = (f'Names change at most {counted(renames.count, "time")} a minute: try again in '
                                f'{wait:.0f} s')
            return
        renames.record(self.me.id)
        name = name.strip()
        app.storage.tab['identity'] = {'id': self.me.id, 'name': name}
        self.room.presence.rename(self.me, name)
        self.name.set_text(name)
        self.initials.set_text(initials(name))
        if self.dialog:
            self.dialog.close()


class PeopleList:
    """The "Here now" drawer: open beside the chat on a wide screen; on a phone closed, until the header's button
    opens it."""

    def __init__(self, room: Room, me: Person) -> None:
        self.room = room
        self.me = me
        with ui.right_drawer(fixed=True).classes('bg-grey-1').props('width=200 breakpoint=700') as self.drawer:
            self.title = ui.label().classes('text-sm text-grey-8 font-medium')  # counts the people
            with ui.column().classes('gap-1 q-mb-xs').mark('bots'):  # the bots first: always here, never counted
                for bot in room.bots.values():  # a bot's mention, and the model that answers it
                    ui.label(f'@{bot.name} · {bot.provider.model}').classes('person-row text-sm') \
                        .style(f'background-image: url({BOT_AVATAR_URL})')
            self.list = ui.column().classes('gap-1').mark('people')
            self.more = ui.label().classes('text-xs text-grey-7')
        self.rows: dict[str, ui.label] = {}
        others = (person for person in room.presence.people.values() if person.id != me.id)
        for person in [me, *others][:PEOPLE_SHOWN]:
            self.add_row(person)
        self.show_count()

    def on_presence_changed(self, person: Person) -> None:
        """One person arrived, left or was renamed: change their row only, so a busy room stays cheap."""
        if row := self.rows.pop(person.id, None):
            self.list.remove(row)
        if person.id in self.room.presence.people and len(self.rows) < PEOPLE_SHOWN:
            self.add_row(person)
        self.show_count()

    def show_count(self) -> None:
        self.title.set_text(f'Here now ({len(self.room.presence.people)})')
        hidden = len(self.room.presence.people) - len(self.rows)
        self.more.set_text(f'and {hidden} more' if hidden > 0 else '')

    def add_row(self, person: Person) -> None:
        """One element per person (every tab has this list): their name, with their avatar image as its background."""
        with self.list:
            row = ui.label(person.name + (' (you)' if person.id == self.me.id else '')).classes('person-row text-sm') \
                .style(f'background-image: url({person_avatar_url(person.name, person.id)})')
        self.rows[person.id] = row


def placeholder(names: list[str]) -> str:
    if len(names) == 1:
        return f'Message the room. Write @{names[0]} to ask {names[0].upper()}.'
    return f'Message the room. Write @ and a name to ask {", ".join(f"@{name}" for name in names)}.'


class BotSuggestions:
    """The message box names the room's bots, and typing @ in it offers them; a click puts the chosen name in. (The
    menu is built the first time it is needed: every element costs each tab memory.)"""

    TYPED_MENTION = re.compile(r'(?:^|(?<=\s))@(\w*)$')  # an @ word at the end of the text, being typed

    def __init__(self, box: ui.input, names: list[str]) -> None:
        self.box = box
        self.names = names
        box.props['placeholder'] = placeholder(names)
        self.menu: ui.menu | None = None
        self.items: dict[str, ui.menu_item] = {}
        box.on_value_change(self.offer)

    def build_menu(self) -> ui.menu:
        with self.box, ui.menu().props('no-focus no-parent-event').mark('bot-suggestions') as menu:
            self.items = {name: ui.menu_item(f'@{name}', on_click=lambda name=name: self.choose(name))
                          .mark(f'suggest-{name}') for name in self.names}
        return menu

    def offer(self) -> None:
        typed = self.TYPED_MENTION.search(self.box.value if isinstance(self.box.value, str) else '')
        start = typed.group(1).lower() if typed else None
        matching = [name for name in self.names if start is not None and name.lower().startswith(start)]
        if matching and [name.lower() for name in matching] != [start]:  # not when the name is typed out already
            self.menu = self.menu or self.build_menu()
            for name, item in self.items.items():
                item.set_visibility(name in matching)
            self.menu.open()
        elif self.menu:
            self.menu.close()

    def choose(self, name: str) -> None:
        value = self.box.value if isinstance(self.box.value, str) else ''
        self.box.value = self.TYPED_MENTION.sub(f'@{name} ', value)
        self.box.run_method('focus')
