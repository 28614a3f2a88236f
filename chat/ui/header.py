"""The page's header: the room's name, who answers (a badge for each bot), today's spending when the room has a
daily budget, your name (click it to change it), and the button that shows who is here."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from ..demo_bot import DemoProvider
from ..presence import Person
from ..room import Room
from .people import MyName


def spending(spent: int, budget: int) -> str:
    return f'Today: {spent:,} of {budget:,} tokens'


class Header:
    def __init__(self, room: Room, me: Person, *, toggle_people: Callable[[], None]) -> None:
        self.budget = room.settings.daily_token_budget
        self.spending: ui.label | None = None
        with ui.header().classes('items-center gap-3 bg-grey-9 q-py-sm'):
            ui.label('Streaming chat').classes('text-lg font-medium')
            if self.budget:
                self.spending = ui.label(spending(room.limits.spent_today, self.budget)) \
                    .classes('text-xs text-grey-4').mark('spending')
            for bot in room.bots.values():  # orange: not a real model
                ui.badge(bot.description, color='orange-9' if isinstance(bot.provider, DemoProvider) else 'teal-8') \
                    .classes('text-xs ellipsis').style('max-width: 28rem; display: block') \
                    .mark('provider').tooltip(bot.description)  # block: a flex badge would cut its text without '…'
            ui.space()
            MyName(room, me)
            ui.button(icon='group', on_click=toggle_people).props('flat round dense').classes('text-white') \
                .tooltip('Who is here')

    def show_spending(self, spent: int) -> None:
        """Today's tokens, as the room counts them: a reply's end here or elsewhere, a check, a new day."""
        assert self.spending is not None
        self.spending.set_text(spending(spent, self.budget))
