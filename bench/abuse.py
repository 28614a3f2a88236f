"""`python -m bench.abuse`: what a raw socket.io client can make the server do, and what it costs the other tabs.

One script opens the room as a tab does (bench/socket_tab.py), then sends what no page would: N renames, N requests
for a reply's text so far, N loads of older messages, and N malformed messages (events whose arguments are
not JSON, messages that are not even objects, log messages at error level). Meanwhile ten ordinary tabs watch a
reply stream, and so they do in a quiet room first, for comparison. Reported: what the abuse achieved (names
changed, replies re-sent, older pages sent), the errors the server logged (there must be none), its CPU and memory
during the abuse, and the ordinary tabs' token latency against the quiet room's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .processes import AppServer, FakeServer
from .scenarios import Result, Run, prefill, score
from .socket_tab import UPDATE, SocketTab, acknowledge_forever, open_tabs, quiet


def elements(tab: SocketTab) -> dict[str, dict[str, Any]]:
    """Every element the tab was sent, in its latest state."""
    found: dict[str, dict[str, Any]] = {}
    for frame in tab.frames or []:
        if frame.startswith(UPDATE):
            found.update({key: value for key, value in json.loads(frame[2:])[1].items() if key != '_id' and value})
    return found


def listener(element: dict[str, Any], kind: str) -> str:
    return next(event['listener_id'] for event in element.get('events', []) if event['type'].startswith(kind))


async def send_junk(tab: SocketTab, number: int) -> None:
    """Malformed messages, each of a kind NiceGUI's own page never sends."""
    assert tab.ws is not None
    client = tab.client_id
    junk = [['event', 'not an object'], ['event', {'client_id': client, 'id': 'x'}],
            ['event', {'client_id': client, 'id': 1, 'listener_id': 'no such', 'args': ['{not json']}],
            ['event', {'client_id': client, 'id': 1, 'listener_id': 'x', 'args': [7]}], ['ack', [1, 2]],
            ['log', {'client_id': client, 'level': 'error', 'message': f'flood {number} ' * 50}],
            ['log', {'client_id': client, 'level': 'critical', 'message': 'x'}], ['javascript_response', None],
            ['handshake', {'client_id': 7}]]
    await tab.ws.send_str('42' + json.dumps(junk[number % len(junk)]))


def find(page: dict[str, dict[str, Any]], **props: Any) -> str:
    """The id of the element whose props hold these values (a placeholder of None: an input without one)."""
    return next(key for key, element in page.items()
                if all(element.get('props', {}).get(name) == value for name, value in props.items()))


def name_box(page: dict[str, dict[str, Any]]) -> str:
    """The rename dialog's input: it listens for Enter like the message box, but invites nothing."""
    return next(key for key, element in page.items() if any(event['type'] == 'keydown' for event in
                element.get('events', [])) and 'placeholder' not in element.get('props', {}))


async def click(tab: SocketTab, page: dict[str, dict[str, Any]], element_id: str) -> None:
    await tab._emit('event', {'id': int(element_id), 'client_id': tab.client_id,
                              'listener_id': listener(page[element_id], 'click'), 'args': [json.dumps({})]})


async def open_the_rename_dialog(tab: SocketTab) -> dict[str, dict[str, Any]]:
    """The page builds its rename dialog at the first click on "Connected as": click it as a reader would, and
    return the page once the dialog has come."""
    await click(tab, elements(tab), find(elements(tab), **{'no-caps': True}))
    for _ in range(200):
        with contextlib.suppress(StopIteration):
            name_box(page := elements(tab))
            return page
        await asyncio.sleep(0.05)
    raise RuntimeError('the rename dialog never came')


async def abuse(tab: SocketTab, count: int) -> int:
    """Renames, resyncs, older pages and junk, `count` of each, as fast as the socket takes them; returns the messages
    sent."""
    page = await open_the_rename_dialog(tab)
    name, save, older = name_box(page), find(page, label='Save'), find(page, label='Show older messages')
    replies = [key for key, element in page.items() if 'message-id' in element.get('props', {})]
    sent = 0
    for number in range(count):
        events = [(name, 'update:', f'Name {number}'), (save, 'click', {}), (older, 'click', {}),
                  (replies[number % len(replies)], 'resync', None)]
        for element_id, kind, argument in events:
            await tab._emit('event', {'id': int(element_id), 'client_id': tab.client_id,
                                      'listener_id': listener(page[element_id], kind), 'args': [json.dumps(argument)]})
        await send_junk(tab, number)
        sent += len(events) + 1
        if number % 20 == 0:
            await asyncio.sleep(0)  # let this process read what comes back
    return sent


def what_it_got(tab: SocketTab) -> dict[str, int]:
    """From what the server sent the abusing tab: the names it showed, the replies re-sent, the messages loaded."""
    frames = tab.frames or []
    names = {element['text'] for frame in frames if frame.startswith(UPDATE)
             for element in json.loads(frame[2:])[1].values()
             if isinstance(element, dict) and 'my-name' in element.get('class', [])}
    resets = sum(1 for frame in frames if frame.startswith('42["run_javascript"') and 'reset' in frame[:300])
    shown = {element['props']['data-message-id'] for frame in frames if frame.startswith(UPDATE)
             for element in json.loads(frame[2:])[1].values()
             if isinstance(element, dict) and 'data-message-id' in element.get('props', {})}
    return {'names shown': len(names), 'replies re-sent': resets, 'messages it was sent': len(shown)}


@dataclass
class Figures:
    label: str
    latency: Result
    cpu_s: float = 0.0
    rss_growth_kib: int = 0
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    sent: int = 0
    got: dict[str, int] = field(default_factory=dict)


async def measure(abusing: bool, count: int, tabs: int, tokens: int, rate: float, workdir: Path,
                  fake: FakeServer) -> Figures:
    db = workdir / f'room-{abusing}.db'
    prefill(db, 1000)  # enough for the older pages: a limit must stop them, not the end of the room
    run = Run(tabs=tabs, tokens=tokens, rate=rate)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with AppServer('ours', db, fake.base_url, workdir, name=f'abuse-{abusing}',
                         flags=('--room-messages-per-minute', '1000')) as server, \
            aiohttp.ClientSession(connector=connector) as session:
        watchers = await open_tabs(session, server.url, tabs, tokens=tokens, replies=1)
        abuser = SocketTab(session, server.url, keep_frames=True)
        await abuser.open()
        await asyncio.wait_for(abuser.ready.wait(), 30)
        acknowledging = asyncio.create_task(acknowledge_forever([*watchers, abuser]))
        await quiet()
        await fake.take()
        errors = (await server.stats())['errors']
        cpu, rss, started = server.cpu_seconds(), server.rss_kib(), time.time()
        await watchers[0].ask(f'@gpt [[bench:{tokens}]] [[delay:{1 / rate:g}]]')
        sent = await abuse(abuser, count) if abusing else 0
        deadline = time.monotonic() + tokens / rate + 60
        while not all(tab.watch and tab.watch.complete for tab in watchers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await quiet()
        stats = await server.stats()
        figures = Figures('abused' if abusing else 'quiet', Result(run), server.cpu_seconds() - cpu,
                          server.rss_kib() - rss, stats['errors'] - errors, stats['error_messages'][-3:], sent,
                          what_it_got(abuser))
        score(figures.latency, watchers, await fake.take(), started, time.time())
        acknowledging.cancel()
        await asyncio.gather(*(tab.close() for tab in [*watchers, abuser]), return_exceptions=True)
    return figures


async def run(count: int, tabs: int, tokens: int, rate: float) -> list[Figures]:
    with tempfile.TemporaryDirectory(prefix='bench-abuse-') as folder:
        async with FakeServer(Path(folder)) as fake:
            return [await measure(abusing, count, tabs, tokens, rate, Path(folder), fake) for abusing in (False, True)]


def report(results: list[Figures]) -> str:
    lines = ['| room | messages the abuser sent | what it got | errors logged | app CPU s | app memory growth | '
             'other tabs: latency p50 / p99 / max (ms) |', '|---|---|---|---|---|---|---|']
    for figures in results:
        latency = figures.latency.latency_ms
        got = ', '.join(f'{value:,} {name}' for name, value in figures.got.items()) if figures.sent else ''
        lines.append(f'| {figures.label} | {figures.sent:,} | {got} | {figures.errors} | {figures.cpu_s:.1f} | '
                     f'{figures.rss_growth_kib / 1024:.1f} MiB | {latency["p50"]:.0f} / {latency["p99"]:.0f} / '
                     f'{latency["max"]:.0f} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m bench.abuse', description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=1000, help='renames, resyncs, older pages and junk: of each')
    parser.add_argument('--tabs', type=int, default=10, help='ordinary tabs watching a reply')
    parser.add_argument('--tokens', type=int, default=1000, help='tokens of the reply they watch')
    parser.add_argument('--rate', type=float, default=100, help='tokens per second')
    arguments = parser.parse_args(argv)
    results = asyncio.run(run(arguments.count, arguments.tabs, arguments.tokens, arguments.rate))
    print(report(results))
    for figures in results:
        for message in figures.error_messages:
            print('error logged:', message, file=sys.stderr)


if __name__ == '__main__':
    main()
