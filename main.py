"""Start the chat room: `python main.py` (see `python main.py --help`)."""

from __future__ import annotations

import logging
import multiprocessing
import sys

from chat.command_line import parse_settings, reason_not_to_start
from chat.ui import serve


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if reason := reason_not_to_start(settings):  # --native without its extra, or a --reset nobody confirmed
        sys.exit(reason)
    serve(settings)  # chat/ui/__init__.py: the room, its page, and the web server (or the desktop window)


# NiceGUI's native mode starts the window in a child process that imports this file again as
# '__mp_main__'; only the main process sets anything up.
if __name__ in {'__main__', '__mp_main__'} and multiprocessing.current_process().name == 'MainProcess':
    main()
