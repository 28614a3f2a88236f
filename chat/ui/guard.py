"""What a tab's socket may send, checked before NiceGUI reads it.

NiceGUI trusts the messages its own page script sends. A raw socket.io client can send anything: a message that is
not a dict, an element's event with arguments that are not JSON, a `log` message at error level a thousand times a
second. Each of NiceGUI's socket handlers is wrapped so that a message of the wrong shape is dropped quietly (a
visitor's junk leaves no traceback in the log), and the browser's log messages are limited and cut short.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import socketio
from nicegui import core

from ..limits import RateLimit

log = logging.getLogger(__name__)

# The fields each message must have, and of what type (as NiceGUI's page script sends them).
SHAPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    'handshake': {'client_id': str, 'tab_id': str, 'document_id': str},
    'event': {'client_id': str, 'id': int, 'listener_id': str, 'args': list},
    'javascript_response': {'client_id': str, 'request_id': str},
    'ack': {'client_id': str, 'next_message_id': int},
}
LOG_SHAPE: dict[str, type | tuple[type, ...]] = {'client_id': str, 'level': str, 'message': str}  # see browser_log
LOG_LEVELS = {'debug': 'debug', 'info': 'info', 'warning': 'warning', 'error': 'warning'}  # a tab's, not the server's
BROWSER_LOGS = RateLimit(5, 60)  # per socket: enough to see a real error, not enough to fill the server's log
ALL_BROWSER_LOGS = RateLimit(30, 60)  # every socket together: a visitor who opens many cannot fill it either


def guard_socket_messages() -> None:
    """Wrap NiceGUI's socket handlers (once per process: the tests start the app many times)."""
    handlers = core.sio.handlers.setdefault('/', {})
    for name, shape in SHAPES.items():
        original = handlers.get(name)
        if original is not None and not getattr(original, 'guarded', False):
            core.sio.on(name, handler=checked(name, shape, original))
    core.sio.on('log', handler=browser_log)  # in place of NiceGUI's, which logs all a tab sends
    if (connect := handlers.get('connect')) is not None and not getattr(connect, 'guarded', False):
        core.sio.on('connect', handler=refusing_quietly(connect))


def refusing_quietly(connect: Callable) -> Callable:
    """A connection whose query NiceGUI cannot read is refused, without a traceback."""
    async def guarded(sid: str, environ: dict, auth: Any = None) -> Any:
        try:
            return await connect(sid, environ, auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception:
            log.debug('refused socket %s: a query NiceGUI could not read', sid)
            raise socketio.exceptions.ConnectionRefusedError('not a tab of this room') from None

    guarded.guarded = True  # type: ignore[attr-defined]
    return guarded


def well_formed(message: Any, shape: dict[str, type | tuple[type, ...]]) -> bool:
    if not isinstance(message, dict) or any(not isinstance(message.get(key), kind) for key, kind in shape.items()):
        return False
    args = message.get('args', [])
    return isinstance(args, list) and all(arg is None or (isinstance(arg, str) and parses(arg)) for arg in args)


def parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def checked(name: str, shape: dict[str, type | tuple[type, ...]], handler: Callable) -> Callable:
    async def guarded(sid: str, message: Any = None, *rest: Any) -> Any:
        if not well_formed(message, shape):
            log.debug('dropped a malformed %r message from socket %s', name, sid)
            return False
        result = handler(sid, message, *rest)
        return await result if hasattr(result, '__await__') else result

    guarded.guarded = True  # type: ignore[attr-defined]
    return guarded


def browser_log(sid: str, message: Any = None) -> None:
    """A tab's console message, in the server's log: known levels only (an error in a tab is a warning here), cut
    short; a few a minute from a socket, whatever they say, and a few more from all of them together. Only from the
    socket of the tab it names (any page load makes a client, whose id a script could name from another socket)."""
    if not well_formed(message, LOG_SHAPE) or message['level'] not in LOG_LEVELS or BROWSER_LOGS.wait(sid):
        return
    BROWSER_LOGS.record(sid)
    if message['client_id'] not in core.sio.rooms(sid) or ALL_BROWSER_LOGS.wait('all'):  # (the handshake's room)
        return
    ALL_BROWSER_LOGS.record('all')
    getattr(log, LOG_LEVELS[message['level']])('a tab says: %s', message['message'][:300])


browser_log.guarded = True  # type: ignore[attr-defined]
