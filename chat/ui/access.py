"""Who may come in: the room's key, the names the room is served under, and where its sockets may be opened from.

Bound to 127.0.0.1 the room is safe enough. Opened to a network, anyone who reaches the port could read the room and
spend the operator's key; so there the room opens only to a browser that came with its key, as Jupyter does it: the
invite link `http://HOST:PORT/?key=KEY` leaves a cookie (the browser's other tabs get in with it), or a small page
asks for the key. Without it there is nothing: no page, no socket, so a raw socket.io client can neither read nor
post. On any host, a request for a name the room is not served under is refused (DNS rebinding: a page elsewhere
that points its own name at 127.0.0.1), and so is a socket opened from a page of another site.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..limits import RateLimit

log = logging.getLogger(__name__)

LOOPBACK = {'127.0.0.1', 'localhost', '::1'}
COOKIE = 'chat_room_key'
WRONG_KEYS_PER_MINUTE = 10
KEY_PAGE = '''<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Streaming chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>body {{ font-family: sans-serif;
max-width: 26rem; margin: 15vh auto; padding: 0 1rem; color: #333 }} input, button {{ font-size: 1rem; padding: .4rem;
}} .wrong {{ color: #c10015 }}</style></head><body><h1>This room needs its key</h1>
<p>Open the invite link you were given, or type the room's key.</p>{wrong}
<form method="get" action="/"><input name="key" type="password" autocomplete="off" autofocus aria-label="Room key">
<button type="submit">Enter</button></form></body></html>'''
KEY_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


def is_loopback(host: str) -> bool:
    return host.strip('[]') in LOOPBACK or host.startswith('127.')


def room_key(settings: Settings) -> str | None:
    """The key that opens the room: --room-key; without one, served to a network (off loopback, or behind a proxy
    named in --allowed-hosts), a random one (unless --no-room-key). Several instances behind one address need the
    same --room-key: each would make its own."""
    if settings.room_key:
        return settings.room_key
    if settings.no_room_key or (is_loopback(settings.host) and not settings.allowed_hosts):
        if settings.no_room_key and not is_loopback(settings.host):
            log.warning('--no-room-key: anyone who reaches %s:%d can read the room and use its bots.', settings.host,
                        settings.port)
        return None
    return secrets.token_urlsafe(18)


def served_hosts(settings: Settings) -> list[str]:
    """The names a request may be addressed to: loopback, the address served on, and, served on every address,
    this machine's own names and addresses; then --allowed-hosts."""
    hosts = set(LOOPBACK) | {settings.host}
    if settings.host in ('0.0.0.0', '::', ''):
        name = socket.gethostname()
        hosts |= {name, socket.getfqdn(), local_address()}
        with contextlib.suppress(OSError):
            hosts |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    hosts |= {host.strip() for host in settings.allowed_hosts.split(',') if host.strip()}
    hosts |= {f'[{host}]' for host in hosts if ':' in host and not host.startswith('[')}  # a Host header's IPv6 form
    return sorted(host.lower() for host in hosts if host)


def local_address() -> str:
    """This machine's address on its network (the one a packet out would leave from; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(('10.255.255.255', 1))
            return probe.getsockname()[0]
        except OSError:
            return '127.0.0.1'


def invite_link(settings: Settings, key: str) -> str:
    host = local_address() if settings.host in ('0.0.0.0', '::', '') else settings.host
    return f'http://{host}:{settings.port}/?key={key}'


class RoomDoor:
    """An ASGI middleware: the room's key for every request but its own page, and no socket from another site."""

    def __init__(self, app: ASGIApp, key: str | None, hosts: list[str]) -> None:
        self.app = app
        self.key = key
        self.hosts = set(hosts)
        self.wrong_keys = RateLimit(WRONG_KEYS_PER_MINUTE, 60)  # per address: a key is not to be guessed
        self.token = hashlib.sha256(f'chat room key: {key}'.encode()).hexdigest() if key else ''  # not the key itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] not in ('http', 'websocket'):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not same_site(headers.get('origin'), headers.get('host', ''), self.hosts):
            return await PlainTextResponse('This room takes no requests from other sites.', 403)(scope, receive, send)
        if not self.key or hmac.compare_digest(cookie(headers, COOKIE).encode(), self.token.encode()):
            return await self.app(scope, receive, send)
        if scope['type'] == 'http' and scope['path'] == '/':
            return await self.key_page(scope, receive, send)
        await PlainTextResponse('This room needs its key.', 403)(scope, receive, send)

    async def key_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = parse_qs(scope.get('query_string', b'').decode(errors='replace')).get('key', [''])[0]
        address = (scope.get('client') or ('',))[0]  # behind a proxy, the proxy's: then everyone's together
        if given and (wait := self.wrong_keys.wait(address)):
            return await PlainTextResponse(f'Too many wrong keys from your address: try again in {wait:.0f} s.', 429,
                                           headers={'Retry-After': str(round(wait))})(scope, receive, send)
        if given and self.key and hmac.compare_digest(given.encode(), self.key.encode()):
            response = RedirectResponse('/', status_code=303)  # the key leaves the address bar and the history
            response.set_cookie(COOKIE, self.token, max_age=30 * 24 * 3600, httponly=True, samesite='lax')
            return await response(scope, receive, send)
        if given:
            self.wrong_keys.record(address)
        wrong = '<p class="wrong">That key does not open this room.</p>' if given else ''
        page = HTMLResponse(KEY_PAGE.format(wrong=wrong), status_code=401 if given else 200,
                            headers={'Content-Security-Policy': KEY_PAGE_POLICY, 'Cache-Control': 'no-store'})
        await page(scope, receive, send)


def same_site(origin: str | None, host: str, hosts: set[str]) -> bool:
    """A request without an Origin (a link, a form) is fine; with one, it must come from a page of this room: one of
    its names, on the port the request came to (a page on another port of localhost is another site), and never
    `null` (a sandboxed frame elsewhere)."""
    if origin is None:
        return True
    try:  # (`null` has no host name: refused)
        page, served = urlsplit(origin.lower()), urlsplit('//' + host.lower())
        # Behind a proxy, the Host header may leave out the port the page was served on: then the names must match.
        return is_served(page.hostname or '', hosts) and page.hostname == served.hostname \
            and served.port in (None, page.port)
    except ValueError:  # a port that is not a number
        return False


def is_served(name: str, hosts: set[str]) -> bool:
    """Whether the room is served under this host name, as TrustedHostMiddleware reads --allowed-hosts: `*.x` for any
    name under x, `*` for any name (IPv6 addresses are in `hosts` with and without their brackets)."""
    return bool(name) and (name in hosts or '*' in hosts or any(
        host.startswith('*.') and name.endswith(host[1:]) for host in hosts))


def cookie(headers: Headers, name: str) -> str:
    for part in headers.get('cookie', '').split(';'):
        key, _, value = part.strip().partition('=')
        if key == name:
            return value
    return ''
