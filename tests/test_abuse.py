"""A raw socket.io client sending what no page would (bench/abuse.py, short form): the server logs no error, every
limit holds, and the other tabs hardly notice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bench import abuse
from bench.socket_tab import CLIENT_ID, SocketTab
from chat.ui.guard import ALL_BROWSER_LOGS, BROWSER_LOGS
from chat.ui.scrolling import OLDER_PAGES

from .browser import AppProcess

COUNT = 300


def test_renames_resyncs_older_pages_and_junk_from_a_raw_socket_are_bounded() -> None:
    quiet, abused = asyncio.run(abuse.run(COUNT, tabs=5, tokens=300, rate=100))
    assert abused.sent == COUNT * 5  # each round: a new name, its Save, an older page, a resync, a malformed message
    assert (quiet.errors, abused.errors) == (0, 0), abused.error_messages  # no traceback, no error for junk
    got = abused.got
    assert got['names shown'] <= 1 + 5, got  # its first name, and five renames a minute
    assert got['replies re-sent'] <= 10, got  # ten a minute for a tab
    assert 100 < got['messages it was sent'] <= 100 * (1 + OLDER_PAGES) + 2, got  # older pages: a few, then none
    assert abused.rss_growth_kib < 64 * 1024, f'the app grew by {abused.rss_growth_kib} KiB'
    # The other tabs' tokens: within twice the quiet room's p99 (about a beat, 50 ms) and 400 ms of slack. The two
    # runs share this machine with other work, which can stall one of them for a few hundred ms; the counts above
    # are what hold the abuser (with no rename or resync limit the p99 moved by 2 ms, the counts by hundreds).
    assert abused.latency.latency_ms['p99'] <= 2 * quiet.latency.latency_ms['p99'] + 400, (
        abused.latency.latency_ms, quiet.latency.latency_ms)


async def send_logs(tab: SocketTab, client_id: str, words: str, count: int) -> None:
    assert tab.ws is not None
    for number in range(count):
        message = {'client_id': client_id, 'level': 'error', 'message': f'{words} {number}'}
        await tab.ws.send_str('42' + json.dumps(['log', message]))


async def lines_settle(app: AppProcess, words: str, at_least: int) -> int:
    """How many lines of the log hold `words`, once there are `at_least` and a moment later no more came (a cap is
    what holds the rest back: nothing else says they will not come)."""
    deadline = time.monotonic() + 10
    while app.log().count(words) < at_least:
        assert time.monotonic() < deadline, f'{app.log().count(words)} lines of {words!r}, not {at_least}'
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    return app.log().count(words)


def test_console_messages_cannot_flood_the_servers_log(tmp_path: Path) -> None:
    """Per socket, and not under another client's id: any page load makes a client whose id a script can read (the
    reviewer's flood: 1,868 lines in 10 s, each in the name of a fresh page load). And all sockets together."""
    async def flood(app: AppProcess) -> None:
        async with aiohttp.ClientSession() as session:
            tabs = [SocketTab(session, app.url) for _ in range(12)]
            for tab in tabs:
                await tab.open()
                await asyncio.wait_for(tab.ready.wait(), 15)
            async with session.get(app.url) as page:  # a page load whose socket never comes: a client all the same
                unconnected = CLIENT_ID.search(await page.text()).group(1)  # type: ignore[union-attr]
            await send_logs(tabs[0], unconnected, 'in the name of a page load', 20)
            await send_logs(tabs[1], tabs[2].client_id, 'in the name of another tab', 20)
            await send_logs(tabs[3], tabs[3].client_id, 'mine, many times', 20)
            assert await lines_settle(app, 'mine, many times', BROWSER_LOGS.count) == BROWSER_LOGS.count
            for tab in tabs[4:]:  # 8 sockets, each within its own limit: 40 lines, more than all may write
                await send_logs(tab, tab.client_id, 'one of many tabs', 20)
            assert await lines_settle(app, 'a tab says', ALL_BROWSER_LOGS.count) == ALL_BROWSER_LOGS.count
            for tab in tabs:
                await tab.close()

    assert BROWSER_LOGS.count + 8 * BROWSER_LOGS.count > ALL_BROWSER_LOGS.count
    with AppProcess(tmp_path, ['--provider', 'demo']) as app:
        asyncio.run(flood(app))
        assert 'in the name of' not in app.log()
