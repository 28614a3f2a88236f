"""A simulated browser tab that speaks NiceGUI's socket protocol, cheap enough to run hundreds in one process.

What a browser does, after nicegui/static/nicegui.js and nicegui/nicegui.py:

1. GET the page. Its HTML carries the client id, in the socket query: `{'client_id': '...', ...}`.
2. Open the socket.io WebSocket at `/_nicegui_ws/socket.io/` with that query, plus a new `tab_id` and
   `document_id`, and `implicit_handshake=true`: the server handshakes while connecting, and the page function
   (which awaits `client.connected()`) then builds the page and sends it as 'update' messages.
3. Answer engine.io's pings ('2' -> '3'), and every 3 s acknowledge the newest message id it has received ('ack'),
   which lets the server drop the history it keeps for reconnects.
4. Send UI events as 'event' messages: `{id, client_id, listener_id, args}`, each argument JSON-encoded.

Like a browser, the tab offers permessage-deflate, so the server pays for compression; the sizes counted are all the
socket.io event messages as the server wrote them (`42["update",{...}]`, `42["grew",{...}]`, ...), before
compression; engine.io's pings are not counted. Once the page is built,
frames are never parsed as JSON: sizes are counted and tokens found by plain string search, so the tabs cost far
less CPU than the server they measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import zlib
from typing import Any
from uuid import uuid4

import aiohttp

from .fake_server import REPLY_STRIDE

CLIENT_ID = re.compile(r"'client_id': '([^']+)'")  # the socket query, printed into the page as a Python dict
EVENT = '42'  # socket.io: '4' message, '2' event, then the JSON array [name, payload]
UPDATE = '42["update",'  # the event that builds and changes the page
TOKEN_NUMBER = re.compile(r'(?<![0-9A-Za-z])w(\d+)')
ACK_INTERVAL = 3.0  # seconds, as nicegui.js


def find_token(frame: str, number: int, start: int = 0) -> int:
    """Where the token `wK` is in the frame, whole (not the start of `wK7`, not the end of `aw1`), or -1."""
    needle = f'w{number}'
    at = frame.find(needle, start)
    while at >= 0:
        after = at + len(needle)
        if not frame[after:after + 1].isdigit() and not frame[at - 1:at].isalnum():
            return at
        at = frame.find(needle, at + 1)
    return -1


def deflated_size(frames: list[str]) -> int:
    """The bytes these messages take on the wire with permessage-deflate, compressed as the server's WebSocket
    library (wsproto) does it: one compressor for the whole connection, a sync flush per message, its 4-byte tail
    dropped. (The frames' 2- to 10-byte headers are not counted, as they are not in the uncompressed sizes.)"""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return sum(len(compressor.compress(frame.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4 for frame in frames)


class TokenWatch:
    """Notes when each token of each reply first reached this tab.

    Tokens reach a tab in order, so it looks only for the next one it expects, and from there reads the tokens
    that follow it in the same JSON string. A naive re-render sends the whole text every time: this keeps the cost
    of finding the new tokens small even then.
    """

    def __init__(self, replies: int, tokens: int) -> None:
        self.tokens = tokens
        self.next = [0] * replies  # per reply: the index of the first token not seen yet
        self.arrivals = [[0.0] * tokens for _ in range(replies)]  # wall-clock arrival time; 0.0: not arrived

    @property
    def complete(self) -> bool:
        return all(index >= self.tokens for index in self.next)

    def scan(self, frame: str, now: float) -> None:
        for reply, index in enumerate(self.next):
            start = 0
            while index < self.tokens:
                at = find_token(frame, reply * REPLY_STRIDE + index, start)
                if at < 0:
                    break
                end = frame.find('"', at)  # the JSON string the token is in ends here (tokens hold no quotes)
                end = len(frame) if end < 0 else end
                for match in TOKEN_NUMBER.finditer(frame, at, end):
                    if int(match.group(1)) != reply * REPLY_STRIDE + index:
                        break
                    self.arrivals[reply][index] = now
                    index += 1
                    if index == self.tokens:
                        break
                start = max(end, at + 1)
            self.next[reply] = index


class SocketTab:
    last_message_at = 0.0  # over all tabs: when any of them last received a message (to wait for quiet)

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, watch: TokenWatch | None = None,
                 keep_frames: bool = False) -> None:
        self.session = session
        self.base_url = base_url.rstrip('/')
        self.watch = watch
        self.watch_only: str | None = None  # if set, tokens count only in messages that start with this
        self.frames: list[str] | None = [] if keep_frames else None
        self.client_id = ''
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.message_box: tuple[int, str, str] | None = None  # element id, value listener id, Enter listener id
        self.ready = asyncio.Event()  # the page is built: its message box has arrived
        self.opened_at = self.ready_at = 0.0
        self.message_times: list[float] = []  # every socket.io event received, when and how big
        self.message_sizes: list[int] = []
        self.next_message_id = 0
        self.acked_message_id = -1
        self.closing = False  # closed by us, as opposed to dropped by the server
        self.refused = False
        self.drops = 0  # times the server dropped the socket (e.g. it was too busy to see a pong in time)
        self._ids: dict[str, str] = {}
        self._reader: asyncio.Task | None = None

    async def open(self) -> None:
        """Load the page and connect its socket; the page arrives over the socket shortly after."""
        self.opened_at = time.time()
        async with self.session.get(f'{self.base_url}/') as response:
            response.raise_for_status()
            html = await response.text()
        match = CLIENT_ID.search(html)
        if match is None:
            raise RuntimeError('no client id in the page; has NiceGUI changed how it writes the socket query?')
        self.client_id = match.group(1)
        self.message_box = None
        self.next_message_id = 0
        self.acked_message_id = -1
        self._ids = {'tab_id': str(uuid4()), 'document_id': str(uuid4())}
        await self._connect()
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever())

    async def _connect(self) -> None:
        query = {'EIO': '4', 'transport': 'websocket', 'client_id': self.client_id, **self._ids,
                 'next_message_id': str(self.next_message_id), 'implicit_handshake': 'true'}
        socket_url = self.base_url.replace('http', 'ws', 1) + '/_nicegui_ws/socket.io/'
        self.ws = await self.session.ws_connect(socket_url, params=query, compress=15, max_msg_size=0)
        await self.ws.send_str('40')  # socket.io: join the default namespace; the handshake happens now

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def ask(self, text: str) -> None:
        """Type `text` into the message box and press Enter, as the browser reports both."""
        assert self.message_box is not None, 'the page is not built yet'
        element_id, value_listener, enter_listener = self.message_box
        for listener_id, argument in ((value_listener, text), (enter_listener, {'key': 'Enter'})):
            await self._emit('event', {'id': element_id, 'client_id': self.client_id, 'listener_id': listener_id,
                                       'args': [json.dumps(argument)]})

    async def ack(self) -> None:
        if self.next_message_id > self.acked_message_id and self.ws is not None and not self.ws.closed:
            await self._emit('ack', {'client_id': self.client_id, 'next_message_id': self.next_message_id})
            self.acked_message_id = self.next_message_id

    def bytes_between(self, start: float, end: float) -> int:
        return sum(size for at, size in zip(self.message_times, self.message_sizes, strict=True) if start <= at <= end)

    async def _emit(self, name: str, payload: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str('42' + json.dumps([name, payload]))

    async def _read_forever(self) -> None:
        """Read until closed; if the server drops the socket, reconnect as socket.io does in a browser: after about
        a second, with the newest message id, so the server re-sends what was missed; if the server has forgotten
        this client by then, it refuses, and the tab reloads the page as nicegui.js does."""
        while not self.closing:
            with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
                await self._read()
            if self.closing:
                return
            if not self.refused:  # a refusal ends a reconnection: it is not another drop
                self.drops += 1
            await asyncio.sleep(1.0)
            with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
                await (self.open() if self.refused else self._connect())
                self.refused = False

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data: str = message.data
            now = time.time()
            if data == '2':  # engine.io ping; the server drops a tab that does not answer in time
                await self.ws.send_str('3')
            elif data.startswith(EVENT):
                self._on_message(data, now)
            elif data.startswith('44'):  # socket.io connect error: the server no longer knows this client
                self.refused = True  # it leaves the WebSocket open, idle: close it, and load the page anew
                await self.ws.close()
                return

    def _on_message(self, data: str, now: float) -> None:
        SocketTab.last_message_at = now
        self._note_message_id(data)
        self.message_times.append(now)
        self.message_sizes.append(len(data) if data.isascii() else len(data.encode()))
        if self.frames is not None:
            self.frames.append(data)
        if self.message_box is None and data.startswith(UPDATE):
            self._find_message_box(data, now)
        if self.watch is not None and (self.watch_only is None or data.startswith(self.watch_only)):
            self.watch.scan(data, now)

    def _note_message_id(self, data: str) -> None:
        at = data.rfind('"_id":')  # NiceGUI adds the id last, so it sits at the end of the payload
        if at >= 0:
            end = at + 6
            while data[end].isdigit():
                end += 1
            self.next_message_id = int(data[at + 6:end]) + 1

    def _find_message_box(self, data: str, now: float) -> None:
        """The page's first big update holds the whole page; the message box is the element that listens for Enter
        and invites a message (the name box in the rename dialog listens for Enter too)."""
        for element_id, element in json.loads(data[2:])[1].items():
            if element_id == '_id' or not element:
                continue
            listeners = {event['type']: event for event in element.get('events', [])}
            value = next((event for kind, event in listeners.items() if kind.startswith('update:')), None)
            enter = listeners.get('keydown')
            invites = str(element.get('props', {}).get('placeholder', '')).startswith('Message the room')
            if value and enter and 'enter' in enter.get('keys', []) and invites:
                self.message_box = (int(element_id), value['listener_id'], enter['listener_id'])
                self.ready_at = now
                self.ready.set()
                return


async def acknowledge_forever(tabs: list[SocketTab]) -> None:
    """What nicegui.js's `setInterval(ack, 3000)` does, for every tab from one task."""
    while True:
        await asyncio.sleep(ACK_INTERVAL)
        await asyncio.gather(*(tab.ack() for tab in tabs), return_exceptions=True)


async def open_tabs(session: aiohttp.ClientSession, base_url: str, count: int, *, replies: int = 0, tokens: int = 0,
                    at_once: int = 2, timeout: float = 60.0) -> list[SocketTab]:
    """Open `count` tabs, `at_once` at a time, each until its page is built; with `tokens`, each watches replies."""
    limit = asyncio.Semaphore(at_once)

    async def open_one() -> SocketTab:
        tab = SocketTab(session, base_url, watch=TokenWatch(replies, tokens) if tokens else None)
        async with limit:
            await tab.open()
            await asyncio.wait_for(tab.ready.wait(), timeout)
        return tab

    return list(await asyncio.gather(*(open_one() for _ in range(count))))


async def quiet(seconds: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until no tab has received a message for `seconds` (the server has sent what it had to send)."""
    deadline = time.monotonic() + timeout
    while time.time() - SocketTab.last_message_at < seconds and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
