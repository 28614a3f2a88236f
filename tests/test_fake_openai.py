"""Tests for the fake OpenAI server, driven by the real `openai` client over real HTTP."""

import asyncio
import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .conftest import eventually
from .fake_openai import DEFAULT_TOKENS, FakeOpenAI, Script, parse_directives


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(server: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: errors must reach the test instead of being retried with back-off
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key='sk-test', max_retries=0) as client:
        yield client


async def stream(client: openai.AsyncOpenAI, text: str, **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model='gpt-4o-mini',
        messages=[{'role': 'user', 'content': text}],
        stream=True,
        stream_options={'include_usage': True},
        **kwargs,
    )


async def collect(client: openai.AsyncOpenAI, text: str, **kwargs: Any) -> tuple[str, str | None, Any]:
    """Stream a reply and return (text, finish_reason, usage)."""
    parts, finish_reason, usage = [], None, None
    async for chunk in await stream(client, text, **kwargs):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or '')
            finish_reason = chunk.choices[0].finish_reason or finish_reason
        usage = chunk.usage or usage
    return ''.join(parts), finish_reason, usage


async def test_happy_path_streams_text_and_usage(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    chunks = [chunk async for chunk in await stream(client, 'Hi!')]
    assert chunks[0].choices[0].delta.role == 'assistant'
    assert {chunk.object for chunk in chunks} == {'chat.completion.chunk'}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(DEFAULT_TOKENS)
    assert chunks[-2].choices[0].finish_reason == 'stop'
    assert ''.join(c.choices[0].delta.content or '' for c in chunks if c.choices) == ''.join(DEFAULT_TOKENS)

    [request] = server.requests
    assert request['headers']['authorization'] == 'Bearer sk-test'
    assert request['body']['messages'] == [{'role': 'user', 'content': 'Hi!'}]
    assert [token for _, token in server.sent] == DEFAULT_TOKENS
    # The count drops as the handler returns, after its last write: at once, but on the server's thread, so a few
    # seconds of margin for a busy machine (the handler is done in milliseconds).
    await eventually(lambda: server.open_streams == 0, timeout=5)


async def test_default_script_is_settable(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    server.script = Script(tokens=['a', 'b'], finish_reason='content_filter')
    text, finish_reason, _ = await collect(client, 'x')
    assert (text, finish_reason) == ('ab', 'content_filter')


async def test_directives_in_last_user_message(client: openai.AsyncOpenAI) -> None:
    text, finish_reason, usage = await collect(client, 'Count please [[tokens:3]]')
    assert (text, finish_reason, usage.completion_tokens) == (' w0 w1 w2', 'stop', 3)

    # only the last user message counts, so chat history can't leak old directives into new requests
    messages = [
        {'role': 'user', 'content': '[[status:500]]'},
        {'role': 'assistant', 'content': 'ok'},
        {'role': 'user', 'content': [{'type': 'text', 'text': '[[tokens:1]]'}]},
    ]
    response = await client.chat.completions.create(model='gpt-4o-mini', messages=messages)
    assert response.choices[0].message.content == ' w0'


async def test_reply_directive_keeps_arbitrary_text(client: openai.AsyncOpenAI) -> None:
    reply = 'Line 1\\n```py\\nprint("hi")\\n```\\n<script>alert(\'x\')</script> **bold** a[0]'
    text, _, usage = await collect(client, f'[[reply:{reply}]]')
    assert text == reply.replace('\\n', '\n')
    assert usage.completion_tokens > 5  # split into small tokens, so it really streams


def test_parse_directives() -> None:
    assert parse_directives('[[delay:0.05]] [[first_delay:2]] [[stall:5]] [[drop:1]] [[malformed:3]]') == {
        'delay': 0.05,
        'first_token_delay': 2.0,
        'stall_after': 5,
        'drop_after': 1,
        'malformed_after': 3,
    }
    with pytest.raises(ValueError):
        parse_directives('[[dealy:1]]')


@pytest.mark.parametrize(
    ('status', 'error', 'code'),
    [
        (429, openai.RateLimitError, 'rate_limit_exceeded'),
        (401, openai.AuthenticationError, 'invalid_api_key'),
        (500, openai.InternalServerError, 'server_error'),
    ],
)
async def test_error_status(client: openai.AsyncOpenAI, status: int, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        await stream(client, f'[[status:{status}]]')
    assert info.value.status_code == status
    assert info.value.code == code


async def test_unknown_directive_is_a_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match='dealy'):
        await stream(client, '[[dealy:1]]')


async def test_drop_breaks_the_stream(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    received = []
    # The socket closes mid chunked body: httpx2 raises RemoteProtocolError ("incomplete chunked read"),
    # which the openai client wraps as openai.APIConnectionError.
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await stream(client, '[[tokens:10]] [[drop:3]]'):
            received.append(chunk.choices[0].delta.content)
    assert received == ['', ' w0', ' w1', ' w2']
    await eventually(lambda: server.open_streams == 0, timeout=5)  # the dropping handler returns on its own thread


async def test_malformed_event(client: openai.AsyncOpenAI) -> None:
    # The openai client json-decodes each event unguarded, so a broken event surfaces as a plain
    # json.JSONDecodeError (a ValueError), not as an openai error.
    with pytest.raises(json.JSONDecodeError):
        await collect(client, '[[tokens:5]] [[malformed:2]]')


@pytest.mark.parametrize('parameter', ['max_tokens', 'max_completion_tokens'])
async def test_max_tokens_cuts_with_length(client: openai.AsyncOpenAI, parameter: str) -> None:
    text, finish_reason, usage = await collect(client, '[[tokens:10]]', **{parameter: 4})
    assert (text, finish_reason, usage.completion_tokens) == (' w0 w1 w2 w3', 'length', 4)


async def test_delays_are_visible_to_the_client(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    start = time.time()
    arrivals = []
    async for chunk in await stream(client, '[[tokens:3]] [[delay:0.3]] [[first_delay:0.2]]'):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.time())
    send_times = [sent_at for sent_at, _ in server.sent]
    assert send_times[0] - start >= 0.19
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(send_times))
    # The first token reaches the client as it is sent, not buffered until the end: it arrives before the last
    # is sent, 0.6 s later (an order, not a latency: a loaded machine delays both sides alike).
    assert len(arrivals) == 3 and arrivals[0] < send_times[-1], (arrivals, send_times)


async def test_stall_keeps_stream_open_until_client_leaves(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    chunks = await stream(client, '[[stall:1]]')
    assert (await chunks.__anext__()).choices[0].delta.role == 'assistant'
    assert (await chunks.__anext__()).choices[0].delta.content == 'Hello'
    # Wait for the next chunk without cancelling the read: a cancelled read may close the connection (the client
    # leaving), which the server could notice before the count below is read.
    next_chunk = asyncio.ensure_future(chunks.__anext__())
    await asyncio.sleep(0.3)
    assert not next_chunk.done()  # what an app's watchdog would see: nothing for 0.3 s
    assert server.open_streams == 1
    next_chunk.cancel()
    await chunks.close()
    # The server looks for the hang-up every 50 ms, from a thread that may wait its turn on a busy machine.
    await eventually(lambda: server.open_streams == 0, timeout=5)


async def test_stop_is_quick_with_a_stalled_stream(server: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    chunks = await stream(client, '[[stall:0]]')
    await chunks.__anext__()  # the role chunk
    start = time.monotonic()
    server.stop()
    # A stalled handler that stop() failed to wake would hold it for its 2 s join timeout, then 2 s more.
    assert time.monotonic() - start < 2.0
    assert server.open_streams == 0
    with pytest.raises(openai.APIConnectionError):  # the stream was cut, as with drop
        await asyncio.wait_for(chunks.__anext__(), 2)


async def test_models_and_non_streaming(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [model.id for model in models.data] == ['gpt-4o-mini']
    response = await client.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'Hi'}])
    assert response.choices[0].message.content == ''.join(DEFAULT_TOKENS)
    assert response.usage is not None and response.usage.completion_tokens == len(DEFAULT_TOKENS)


def test_command_line_prints_base_url() -> None:
    script = Path(__file__).with_name('fake_openai.py')
    command = [sys.executable, str(script), '--port', '0', '--tokens', '2']
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith('http://127.0.0.1:') and base_url.endswith('/v1')
            with urllib.request.urlopen(f'{base_url}/models', timeout=5) as response:
                assert json.load(response)['data'][0]['id'] == 'gpt-4o-mini'
        finally:
            process.terminate()
