"""Start the chat room: `python main.py` (see `python main.py --help`)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import signal
import sys

from nicegui import ui

from chat.config import Settings, parse_settings
from chat.providers import LocalModelError
from chat.ui import build_app

NATIVE_MISSING = ("--native needs pywebview with Qt, which is not installed. Install it with:\n"
                  "    pip install -e '.[native]'\n"
                  "(on Linux it also needs a desktop session or Xvfb; see the README), or run without --native.")


def confirm_reset(settings: Settings) -> bool:
    if settings.yes:
        return True
    if not sys.stdin.isatty():
        print('--reset deletes every message; add --yes to confirm when there is no terminal to ask.', file=sys.stderr)
        return False
    answer = input(f'Delete every message in {settings.db}? Type "yes" to confirm: ')
    return answer.strip().lower() == 'yes'


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if settings.native and importlib.util.find_spec('webview') is None:
        sys.exit(NATIVE_MISSING)
    if settings.reset and not confirm_reset(settings):
        sys.exit('Nothing was deleted.')
    try:
        build_app(settings)
    except LocalModelError as error:  # --provider local without the extra, or a --model-path that is not a model
        sys.exit(str(error))
    if settings.native:  # the window would outlive a plain SIGTERM; let it end the app as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop: no traceback
        ui.run(
            host=settings.host,
            port=settings.port,
            title='Streaming chat',
            favicon='💬',
            show=settings.show_browser,
            native=settings.native,
            window_size=(1100, 800) if settings.native else None,
            reload=False,
            show_welcome_message=False,
        )


# NiceGUI's native mode starts the window in a child process that imports this file again as
# '__mp_main__'; only the main process sets anything up.
if __name__ in {'__main__', '__mp_main__'} and multiprocessing.current_process().name == 'MainProcess':
    main()
