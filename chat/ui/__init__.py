"""Everything that touches `nicegui.ui`, and the wiring: the room made, opened at start-up, closed at shutdown, served.

`build_app` is the one place where the parts meet: the bots, the store and the room; the page; and the optional
parts (the relay between instances on PostgreSQL, the garbage-collection policy). `serve` runs it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import sys

from nicegui import Client, app, background_tasks, ui
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..config import Settings
from ..demo_bot import DemoProvider
from ..performance.gc_policy import FullCollectionsWhenQuiet, set_aside_start_up_objects
from ..performance.pacing import Pacer
from ..providers import ProviderError
from ..room import Room
from ..roster import BotsFileError, make_bots
from ..seed import play_script
from ..store import Store
from .access import RoomDoor, invite_link, room_key, served_hosts
from .guard import guard_socket_messages
from .page import register_page
from .security import ContentSecurityPolicy
from .stream import ReplyTextBroadcast

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Build the app and run it until Ctrl-C: in a browser tab, or in a desktop window with `--native`."""
    key = room_key(settings)  # off loopback, the room opens only with its key
    try:
        build_app(settings, key)
    except (ProviderError, BotsFileError) as error:  # a local model that cannot load, a bots file that cannot be used
        sys.exit(str(error))
    if key:
        print(f'The room needs its key. Invite people with this link (anyone who has it can read the room and ask '
              f'its bots):\n    {invite_link(settings, key)}', flush=True)
    if settings.native:  # the window would outlive a plain SIGTERM; let it end the app as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop: no traceback
        ui.run(host=settings.host, port=settings.port, title='Streaming chat', favicon='💬',
               show=f'/?key={key}' if key and settings.show_browser else settings.show_browser,
               native=settings.native, window_size=(1100, 800) if settings.native else None, reload=False,
               show_welcome_message=False,
               storage_secret=secrets.token_urlsafe(32))  # signs the browser's cookie: limits count per browser too


def build_app(settings: Settings, room_key: str | None = None) -> Room:
    """Create the room and hook it to the app: open it at start-up, close it at shutdown, serve the page only to
    browsers that came with `room_key` (if there is one) and only under the names it is served as."""
    several_instances = settings.db_url.startswith('postgresql')  # other instances may share a PostgreSQL room
    if several_instances:
        from ..instances.leases import LeasedStore
        from ..instances.relay import LEASE_SECONDS, PostgresRelay  # psycopg is an optional extra

    store = LeasedStore(settings.db_url, LEASE_SECONDS) if several_instances else Store(settings.db_url)
    room = Room(settings, store, make_bots(settings))
    app.add_middleware(ContentSecurityPolicy)
    hosts = served_hosts(settings)
    app.add_middleware(RoomDoor, key=room_key, hosts=hosts)  # (the last one added is the first to see a request)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.state.room = room  # FastAPI's place for app-wide objects; the tests reach the room through it
    app.state.reply_text_broadcast = broadcast = ReplyTextBroadcast(room)
    app.on_startup(lambda: start(room, settings))
    relay = PostgresRelay(room, settings.db_url) if several_instances else None
    if relay:
        app.on_startup(relay.start)
        app.on_shutdown(relay.stop_listening)  # shutdown hooks run one after the other, in this order
    app.on_shutdown(room.close)
    if relay:
        app.on_shutdown(relay.stop)  # after the room closed: its replies' "interrupted" still reach the others
    FullCollectionsWhenQuiet().follow(room)  # no stop-the-world pause while replies stream here
    register_page(room, broadcast, Pacer())
    guard_socket_messages()
    return room


async def start(room: Room, settings: Settings) -> None:
    if room.is_open:  # the start-up hooks may run more than once (the tests' simulated tabs do that)
        return
    await room.open(reset=settings.reset)
    if not Client.instances:  # before any tab exists: a tab's objects set aside now would never be collected
        set_aside_start_up_objects()
    for bot in room.bots.values():
        if isinstance(bot.provider, DemoProvider):
            log.warning('%s.', bot.description)  # what to change for a real one: the key, the extra, the bots file
        else:
            log.info('%s', bot.description)
    if settings.seed and not room.recent:
        background_tasks.create(play_script(room), name='first-run demo conversation')

