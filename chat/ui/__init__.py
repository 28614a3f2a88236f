"""Everything that touches `nicegui.ui`: the page (page.py and its parts), how it is protected, and how it is served.

main.py builds the app from these; `serve` runs it: a web server, or a desktop window with `--native`.
"""

from __future__ import annotations

import contextlib
import secrets
import signal

from nicegui import app, ui
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..config import Settings
from .access import RoomDoor, invite_link, served_hosts
from .guard import guard_socket_messages
from .page import register_page
from .security import ContentSecurityPolicy

__all__ = ['protect', 'register_page', 'serve']


def protect(settings: Settings, key: str | None) -> None:
    """Serve the page only to browsers that came with `key` (if there is one), only under the names the room is
    served as, with a Content-Security-Policy; and refuse socket messages of the wrong shape."""
    app.add_middleware(ContentSecurityPolicy)
    hosts = served_hosts(settings)
    app.add_middleware(RoomDoor, key=key, hosts=hosts)  # (the last one added is the first to see a request)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    guard_socket_messages()


def serve(settings: Settings, key: str | None) -> None:
    """Run until Ctrl-C: a web server (opening a browser tab), or a desktop window with `--native`."""
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
