"""Start the chat room: `python main.py` (see `python main.py --help`). This is where the parts meet."""

from __future__ import annotations

import logging
import multiprocessing
import sys

from nicegui import Client, app, background_tasks

from chat.command_line import parse_settings, reason_not_to_start
from chat.config import Settings
from chat.performance.gc_policy import FullCollectionsWhenQuiet, set_aside_start_up_objects
from chat.performance.pacing import Pacer
from chat.providers import ProviderError
from chat.room import Room
from chat.roster import BotsFileError, describe_bots, make_bots
from chat.seed import play_script
from chat.store import Store
from chat.ui import protect, register_page, serve
from chat.ui.access import room_key
from chat.ui.stream import ReplyTextBroadcast


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if reason := reason_not_to_start(settings):  # --native without its extra, or a --reset nobody confirmed
        sys.exit(reason)
    key = room_key(settings)  # off loopback, the room opens only with its key
    try:
        build_app(settings, key)
    except (ProviderError, BotsFileError) as error:  # a local model that cannot load, a bots file that cannot be used
        sys.exit(str(error))
    serve(settings, key)  # chat/ui: the web server, or a desktop window with --native


def build_app(settings: Settings, key: str | None = None) -> Room:
    """The room, its store and bots; the page, and the one broadcast that grows replies in every tab; the room opened
    at start-up and closed at shutdown; the optional parts: the relay between instances on PostgreSQL, and the
    garbage-collection policy. Served only to browsers that came with `key` (if there is one)."""
    several_instances = settings.db_url.startswith('postgresql')  # other instances may share a PostgreSQL room
    if several_instances:
        from chat.instances.leases import LeasedStore
        from chat.instances.relay import LEASE_SECONDS, PostgresRelay  # psycopg is an optional extra

    store = LeasedStore(settings.db_url, LEASE_SECONDS) if several_instances else Store(settings.db_url)
    room = Room(settings, store, make_bots(settings))
    protect(settings, key)  # the Content-Security-Policy, the room's key, the names it is served under, the socket
    app.state.room = room  # FastAPI's place for app-wide objects; the tests reach the room through it
    app.state.reply_text_broadcast = broadcast = ReplyTextBroadcast(room)
    register_page(room, broadcast, Pacer())
    app.on_startup(lambda: start(room, settings))
    relay = PostgresRelay(room, settings.db_url) if several_instances else None
    if relay:
        app.on_startup(relay.start)
        app.on_shutdown(relay.stop_listening)  # shutdown hooks run one after the other, in this order
    app.on_shutdown(room.close)
    if relay:
        app.on_shutdown(relay.stop)  # after the room closed: its replies' "interrupted" still reach the others
    FullCollectionsWhenQuiet().follow(room)  # no stop-the-world pause while replies stream here
    return room


async def start(room: Room, settings: Settings) -> None:
    if room.is_open:  # the start-up hooks may run more than once (the tests' simulated tabs do that)
        return
    await room.open(reset=settings.reset)
    if not Client.instances:  # before any tab exists: a tab's objects set aside now would never be collected
        set_aside_start_up_objects()
    describe_bots(room.bots.values())  # on the terminal: who answers, and what to change for the demo bot
    if settings.seed and not room.recent:
        background_tasks.create(play_script(room), name='first-run demo conversation')


# NiceGUI's native mode starts the window in a child process that imports this file again as
# '__mp_main__'; only the main process sets anything up.
if __name__ in {'__main__', '__mp_main__'} and multiprocessing.current_process().name == 'MainProcess':
    main()
