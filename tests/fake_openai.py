"""A small, real, OpenAI-compatible HTTP server for tests and benchmarks: no internet, no API key.

It speaks just enough of the Chat Completions API for the `openai` client (streamed chunks with usage, errors,
`/v1/models`). Behaviour comes from `server.script = Script(...)`, or per request from `[[name:value]]` directives
in the last user message, so an app in another process can ask for a slow, failing or stalled reply.
Standard library only, served from its own threads, so it never shares or blocks the app's asyncio loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import select
import socket
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TOKENS = ['Hello', ' there', '!', ' How', ' can', ' I', ' help', '?']

# status -> (type, code, message), shaped like the real API's error bodies so the client maps them correctly
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ('invalid_request_error', None, 'Invalid request.'),
    401: ('invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.'),
    404: ('invalid_request_error', 'not_found', 'Unknown URL.'),
    429: ('requests', 'rate_limit_exceeded', 'Rate limit reached for requests.'),
    500: ('server_error', 'server_error', 'The server had an error while processing your request.'),
    503: ('server_error', 'service_unavailable', 'The engine is currently overloaded.'),
}

# `(?!\])` lets a reply end with `]`: in `[[reply:a[0]]]]` the directive closes at the last `]]`
DIRECTIVE = re.compile(r'\[\[(\w+):(.*?)\]\](?!\])', re.DOTALL)


def numbered_tokens(n: int) -> list[str]:
    """Recognisable tokens ' w0', ' w1', ... so a test can tell exactly which ones arrived."""
    return [f' w{i}' for i in range(n)]


def split_reply(text: str, size: int = 4) -> list[str]:
    """Cut a literal reply into ~4-character tokens (about what a real tokenizer does) so it streams."""
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class Script:
    """How the fake model answers. The `*_after` counts are numbers of content tokens already sent."""

    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    delay: float = 0.0  # seconds between tokens
    first_token_delay: float = 0.0  # seconds between the response headers and the first chunk
    status: int = 200  # anything else: that HTTP status with an OpenAI-style JSON error body
    stall_after: int | None = None  # go silent, keeping the connection open until the client leaves or we stop
    drop_after: int | None = None  # close the socket mid-stream, without finishing the HTTP body or [DONE]
    malformed_after: int | None = None  # send one event that is not JSON, then carry on
    finish_reason: str = 'stop'
    send_usage: bool = True  # False: like llama.cpp's server, no usage in the stream even when asked for


# directive name -> (Script field, converter from the directive's text)
DIRECTIVES: dict[str, tuple[str, Any]] = {
    'tokens': ('tokens', lambda value: numbered_tokens(int(value))),
    'reply': ('tokens', lambda value: split_reply(value.replace('\\n', '\n'))),
    'delay': ('delay', float),
    'first_delay': ('first_token_delay', float),
    'status': ('status', int),
    'stall': ('stall_after', int),
    'drop': ('drop_after', int),
    'malformed': ('malformed_after', int),
    'finish': ('finish_reason', str),
    'usage': ('send_usage', lambda value: value.lower() not in ('no', 'false', '0')),
}


def parse_directives(text: str) -> dict[str, Any]:
    """Turn `[[name:value]]` directives into `Script` field overrides; raises ValueError on typos."""
    overrides = {}
    for name, value in DIRECTIVE.findall(text):
        if name not in DIRECTIVES:
            raise ValueError(f'Unknown directive [[{name}:...]], expected one of {", ".join(DIRECTIVES)}')
        field_name, convert = DIRECTIVES[name]
        overrides[field_name] = convert(value if name == 'reply' else value.strip())
    return overrides


def content_text(content: Any) -> str:
    """Message content is either a string or a list of parts like {'type': 'text', 'text': ...}."""
    if isinstance(content, list):
        return ''.join(part.get('text', '') for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ''


def llama_tokenizer(route: str, body: dict[str, Any]) -> dict[str, Any]:
    """What llama.cpp's server answers: the prompt as a chat template renders it, or its tokens (here one a word,
    and one more for the start of the text with `add_special`)."""
    if route == '/apply-template':
        turns = [f'<|{message.get("role")}|> {content_text(message.get("content"))}' for message in body['messages']]
        return {'prompt': '\n'.join([*turns, '<|assistant|>'])}
    words = str(body['content']).split()
    return {'tokens': list(range(len(words) + (1 if body.get('add_special') else 0)))}


class FakeOpenAI:
    """`with FakeOpenAI() as server:` point a client at `server.base_url`, then inspect what it sent."""

    def __init__(
        self, script: Script | None = None, *, host: str = '127.0.0.1', port: int = 0, model: str = 'gpt-4o-mini'
    ) -> None:
        self.script = script or Script()  # default behaviour; directives in a request override it
        self.host, self.port, self.model = host, port, model
        self.requests: list[dict[str, Any]] = []  # {'method', 'path', 'headers' (lower-case keys), 'body', 'time'}
        self.sent: list[tuple[float, str]] = []  # (time.time(), token): wall clock so other processes can compare
        self.open_streams = 0
        self.tokenizer = False  # True: llama.cpp's /apply-template and /tokenize, one token a word (else 404)
        self.stopping = threading.Event()  # wakes sleeping and stalled handlers so stop() never hangs
        # Set: streams send the rest of their tokens without their delay (a test that needs a reply long enough
        # to see something happen while it streams, however long that takes, and then no longer).
        self.hurry = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f'http://{self.host}:{self.port}/v1'

    def start(self) -> FakeOpenAI:
        self.stopping.clear()
        self.hurry.clear()  # a server started again streams at its scripted pace
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]  # the real port when the OS picked one
        # a short poll interval makes shutdown() return quickly
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={'poll_interval': 0.05}, name='fake-openai', daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        if self._httpd is None or self._thread is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # also unblocks handlers idling on keep-alive connections
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.open_streams and time.monotonic() < deadline:  # let handlers notice and finish
            time.sleep(0.01)
        self._httpd = self._thread = None

    def reset(self) -> None:
        """Forget recorded requests and tokens, e.g. between benchmark rounds."""
        with self._lock:
            self.requests.clear()
            self.sent.clear()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        headers = {key.lower(): value for key, value in handler.headers.items()}
        request = dict(method=handler.command, path=handler.path, headers=headers, body=body, time=time.time())
        with self._lock:
            self.requests.append(request)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck handler must never keep the test process alive
    fake: FakeOpenAI

    def finish_request(self, request: Any, client_address: Any) -> None:
        # runs in the handler's thread for the connection's whole life, so stop() can find and close it
        with self.fake._lock:
            self.fake._connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.fake._lock:
                self.fake._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-stream is normal here (tests do it on purpose), not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive plus chunked streaming, like the real API
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        fake = self.server.fake
        fake._record(self, None)
        if self.path.rstrip('/') != '/v1/models':
            return self._send_error(404)
        model = {'id': fake.model, 'object': 'model', 'created': 0, 'owned_by': 'fake-openai'}
        self._send_json(200, {'object': 'list', 'data': [model]})

    def do_POST(self) -> None:
        fake = self.server.fake
        try:
            body = json.loads(self.rfile.read(int(self.headers.get('Content-Length', 0))) or b'{}')
        except ValueError:
            fake._record(self, None)
            return self._send_error(400, 'Request body is not valid JSON.')
        fake._record(self, body)
        if self.path != '/v1/chat/completions':
            return self._other_route(body)
        user_texts = [content_text(m.get('content')) for m in body.get('messages', []) if m.get('role') == 'user']
        try:
            script = dataclasses.replace(fake.script, **parse_directives(user_texts[-1] if user_texts else ''))
        except ValueError as error:
            return self._send_error(400, str(error))
        if script.status != 200:
            return self._send_error(script.status)

        tokens, finish_reason = script.tokens, script.finish_reason
        limit = body.get('max_completion_tokens') or body.get('max_tokens')
        if limit is not None and len(tokens) > limit:
            tokens, finish_reason = tokens[:limit], 'length'
        prompt_chars = sum(len(content_text(m.get('content'))) for m in body.get('messages', []))
        usage = {'prompt_tokens': max(1, prompt_chars // 4), 'completion_tokens': len(tokens)}
        usage['total_tokens'] = usage['prompt_tokens'] + usage['completion_tokens']
        model = body.get('model', fake.model)
        base = {'id': f'chatcmpl-{uuid.uuid4().hex[:24]}', 'created': int(time.time()), 'model': model}
        if not body.get('stream'):
            fake.stopping.wait(script.first_token_delay)
            message = {'role': 'assistant', 'content': ''.join(tokens), 'refusal': None}
            choice = {'index': 0, 'message': message, 'logprobs': None, 'finish_reason': finish_reason}
            return self._send_json(200, {**base, 'object': 'chat.completion', 'choices': [choice], 'usage': usage})
        include_usage = bool((body.get('stream_options') or {}).get('include_usage'))
        base = {**base, 'object': 'chat.completion.chunk'}
        if include_usage:
            base['usage'] = None  # the real API sends usage: null on every chunk but the last
        with fake._lock:
            fake.open_streams += 1
        try:
            finished = self._stream(script, tokens, finish_reason, base,
                                    usage if include_usage and script.send_usage else None)
        except OSError:  # the client hung up, or stop() shut the socket down
            finished = False
        finally:
            with fake._lock:
                fake.open_streams -= 1
        if not finished:
            self.close_connection = True  # the body was cut short, so this connection can't carry another request

    def _stream(
        self, script: Script, tokens: list[str], finish_reason: str, base: dict[str, Any], usage: dict[str, int] | None
    ) -> bool:
        """Send the SSE stream; returns False if it ended early (drop, stall, stop or client gone)."""
        fake = self.server.fake
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream; charset=utf-8')
        self.send_header('Cache-Control', 'no-cache')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()  # the client's create() returns now; chunks follow as they are "generated"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {'index': 0, 'delta': delta, 'logprobs': None, 'finish_reason': finish}
            return b'data: ' + json.dumps({**base, 'choices': [choice]}).encode() + b'\n\n'

        if fake.stopping.wait(script.first_token_delay):
            return False
        self._write(chunk({'role': 'assistant', 'content': '', 'refusal': None}))
        for count, token in enumerate([*tokens, None]):  # None: the checks also apply after the last token
            if count == script.stall_after:
                self._stall()
                return False
            if count == script.drop_after:
                return False  # returning with close_connection set closes the socket mid-body
            if count == script.malformed_after:
                self._write(b'data: {not json\n\n')
            if token is None:
                break
            if count and not fake.hurry.is_set() and fake.stopping.wait(script.delay):
                return False
            self._write(chunk({'content': token}))
            fake.sent.append((time.time(), token))  # list.append is atomic, so no lock on this hot path
        self._write(chunk({}, finish_reason))
        if usage:
            self._write(b'data: ' + json.dumps({**base, 'choices': [], 'usage': usage}).encode() + b'\n\n')
        self._write(b'data: [DONE]\n\n')
        self.wfile.write(b'0\r\n\r\n')  # the empty chunk that ends a chunked body
        return True

    def _stall(self) -> None:
        """Say nothing, but notice both the server stopping and the client hanging up (EOF on the socket)."""
        while not self.server.fake.stopping.wait(0.05):
            if select.select([self.connection], [], [], 0)[0] and not self.connection.recv(1, socket.MSG_PEEK):
                return

    def _write(self, data: bytes) -> None:
        # one HTTP chunk per SSE event, flushed at once so the client sees each token as it is sent
        self.wfile.write(b'%X\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()

    def _other_route(self, body: dict[str, Any]) -> None:
        if self.server.fake.tokenizer and self.path in ('/apply-template', '/tokenize'):
            return self._send_json(200, llama_tokenizer(self.path, body))
        return self._send_error(404)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str | None = None) -> None:
        error_type, code, default_message = ERRORS.get(status, ('api_error', None, f'Fake error {status}.'))
        error = {'message': message or default_message, 'type': error_type, 'param': None, 'code': code}
        self._send_json(status, {'error': error})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='Run a fake OpenAI-compatible server in the foreground.')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8765, help='0 lets the OS pick a free port')
    parser.add_argument('--delay', type=float, default=0.0, help='seconds between tokens')
    parser.add_argument('--first-delay', type=float, default=0.0, help='seconds before the first token')
    parser.add_argument('--tokens', type=int, help="reply with N tokens ' w0', ' w1', ... instead of a sentence")
    args = parser.parse_args(argv)
    script = Script(delay=args.delay, first_token_delay=args.first_delay)
    if args.tokens is not None:
        script.tokens = numbered_tokens(args.tokens)
    with FakeOpenAI(script, host=args.host, port=args.port) as server, suppress(KeyboardInterrupt):
        print(server.base_url, flush=True)  # flushed: a parent process may be waiting to read it
        threading.Event().wait()  # until Ctrl-C


if __name__ == '__main__':
    main()
