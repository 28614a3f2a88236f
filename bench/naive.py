"""The naive variant, kept for comparison: the original demo's design, ported to this app.

The original (Convex's streaming chat) writes the whole text so far to the database on every token, and every
client re-renders the whole message when it changes. Here that is: no coalescing at all (`ui_interval=0`,
`db_interval=0`: one database write and one tab update per token), and every tab's page listening to the reply's
growth itself, with a bubble whose streaming view is one `ui.markdown` whose content is set to the whole text on
every delta, which NiceGUI then sends to every tab whole (instead of chat/ui/stream.py's one broadcast of the new text).
Everything else (the room, the store, the provider, the page) is the app's own code.

`python -m bench.naive FLAGS` takes main.py's flags.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nicegui import ui

import main as chat_main
from chat.config import Settings
from chat.models import Kind, Message
from chat.performance.pacing import Pacer
from chat.presence import Person
from chat.reply import Growth
from chat.room import Room
from chat.ui import bubble, page, stream

from .serve import serve


class NaiveBubble(bubble.Bubble):
    """A reply in progress is one Markdown element, re-rendered and re-sent whole on every token; once it has ended
    it is drawn whole once more, as the app draws a finished reply."""

    def __init__(self, message: Message, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.markdown: ui.markdown | None = None
        if message.kind == Kind.BOT and message.status.in_progress:
            live = self.reply_so_far(message.id)  # type: ignore[arg-type]
            self.element.clear()
            with self.element:
                self.markdown = ui.markdown(live.text if live else message.body)

    def change(self, message: Message) -> None:
        if self.markdown is None:
            super().change(message)
            return
        self.message = message
        if not message.status.in_progress:
            self.element.clear()
            with self.element:
                stream.ReplyText(message.id, self.state, live=False).classes('message-body reply-text nicegui-markdown')
            self.markdown = None
        self.show_status(message)

    def append(self, text: str) -> None:
        if self.markdown is not None:
            self.markdown.content = self.markdown.content + text  # the whole reply so far, every time


class NaiveChatPage(page.ChatPage):
    def __init__(self, room: Room, person: Person, pacer: Pacer) -> None:
        super().__init__(room, person, pacer)
        room.grew.subscribe(self.on_grew)

    def on_grew(self, growth: dict[int, Growth]) -> None:
        for message_id, grown in growth.items():
            if reply := self.bubbles.get(message_id):
                reply.append(grown.text)


def patch() -> None:
    parse_settings = chat_main.parse_settings

    def naive_settings(argv: list[str] | None = None) -> Settings:
        return dataclasses.replace(parse_settings(argv), ui_interval=0, db_interval=0)

    chat_main.parse_settings = naive_settings  # main() looks the name up at call time, in its own module
    page.Bubble = NaiveBubble  # the page builds bubbles through this name
    page.ChatPage = NaiveChatPage  # and register_page builds pages through this one
    stream.ReplyTextBroadcast.add_tab = lambda self, client_id: None  # type: ignore[method-assign]  # no broadcast


if __name__ == '__main__':
    patch()
    serve()
