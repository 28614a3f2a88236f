"""Who is here: the people with the room open, and the news of someone arriving, leaving or changing their name.

A person is a tab's identity, kept in the tab's storage, so a reload is the same person; a person with two tabs is
listed until the last one closes. Each instance knows only its own tabs' people.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nicegui import Event


@dataclass
class Person:
    id: str
    name: str
    browser_id: str = ''  # the browser the person's tabs are in (NiceGUI's browser storage), counted by the limits
    tabs: set[str] = field(default_factory=set)  # ids of the clients (page loads) this person has open

    @property
    def keys(self) -> tuple[str, ...]:
        """Who the limits count: this person, and their browser, so that a new tab does not start afresh."""
        return (self.id, f'browser:{self.browser_id}') if self.browser_id else (self.id,)


class Presence:
    def __init__(self) -> None:
        self.people: dict[str, Person] = {}  # by their identity's id
        self.changed = Event[Person]()  # someone arrived, left (no longer in `people`) or was renamed

    def join(self, person_id: str, name: str, client_id: str, browser_id: str = '') -> Person:
        person = self.people.setdefault(person_id, Person(person_id, name, browser_id))
        is_news = not person.tabs or person.name != name  # a second tab of the same person changes nothing
        person.name = name
        person.tabs.add(client_id)
        if is_news:
            self.changed.emit(person)
        return person

    def leave(self, person_id: str, client_id: str) -> None:
        person = self.people.get(person_id)
        if person is None:
            return
        person.tabs.discard(client_id)
        if not person.tabs:
            del self.people[person_id]
            self.changed.emit(person)

    def rename(self, person: Person, name: str) -> None:
        person.name = name
        self.changed.emit(person)
