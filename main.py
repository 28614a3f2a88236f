"""Start the chat room: `python main.py` (see `python main.py --help`)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import secrets
import signal
import sys

from nicegui import ui

from chat.command_line import parse_settings, reason_not_to_start
from chat.providers import ProviderError
from chat.roster import BotsFileError
from chat.ui import build_app
from chat.ui.access import invite_link, room_key


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
    if key:
        print(f'The room needs its key. Invite people with this link (anyone who has it can read the room and ask '
              f'its bots):\n    {invite_link(settings, key)}', flush=True)
    if settings.native:  # the window would outlive a plain SIGTERM; let it end the app as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop: no traceback
        ui.run(
            host=settings.host,
            port=settings.port,
            title='Streaming chat',
            favicon='💬',
            show=f'/?key={key}' if key and settings.show_browser else settings.show_browser,
            native=settings.native,
            window_size=(1100, 800) if settings.native else None,
            reload=False,
            show_welcome_message=False,
            storage_secret=secrets.token_urlsafe(32),  # signs the browser's cookie: the limits count per browser too
        )


# NiceGUI's native mode starts the window in a child process that imports this file again as
# '__mp_main__'; only the main process sets anything up.
if __name__ in {'__main__', '__mp_main__'} and multiprocessing.current_process().name == 'MainProcess':
    main()
