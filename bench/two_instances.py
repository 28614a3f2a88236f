"""`python -m bench.two_instances`: two app instances on one PostgreSQL room; what the extra hop costs.

    python -m bench.two_instances --tabs 50 --tokens 2000 --rate 100

A private PostgreSQL (made with initdb, as in tests/postgres), the fake OpenAI server and two app processes
(`bench.serve`) on the same database. N socket tabs watch on each instance; a person on instance A asks, so A
streams the reply and B repeats it to its tabs from PostgreSQL's NOTIFY (chat/instances/relay.py). Reported for each
instance's tabs: token-to-tab latency (from the moment the fake server sent the token), bytes per tab, and each
instance's CPU seconds during the reply. The difference between A's tabs and B's tabs is the hop's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.postgres.conftest import private_postgres

from .processes import AppServer, FakeServer
from .scenarios import Result, Run, score
from .socket_tab import acknowledge_forever, open_tabs, quiet


async def measure(tabs: int, tokens: int, rate: float, workdir: Path, db_url: str) -> None:
    run = Run(tabs=tabs, tokens=tokens, rate=rate)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with FakeServer(workdir) as fake, \
            AppServer('ours', db_url, fake.base_url, workdir, name='a') as first, \
            AppServer('ours', db_url, fake.base_url, workdir, name='b') as second, \
            aiohttp.ClientSession(connector=connector) as session:
        [asker] = await open_tabs(session, first.url, 1)
        watching = {name: await open_tabs(session, server.url, tabs, replies=1, tokens=tokens)
                    for name, server in (('A (streams the reply)', first), ('B (repeats it)', second))}
        everyone = [asker, *(tab for group in watching.values() for tab in group)]
        acknowledging = asyncio.create_task(acknowledge_forever(everyone))
        try:
            await quiet()
            await fake.take()
            cpu_before = [server.cpu_seconds() for server in (first, second)]
            start = time.time()
            await asker.ask(f'@gpt [[bench:{tokens}]] [[delay:{1 / rate:g}]]')
            deadline = time.monotonic() + 2 * tokens / rate + 30
            while not all(tab.watch and tab.watch.complete for tab in everyone[1:]) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await quiet()
            end = time.time()
            cpu = [server.cpu_seconds() - before for server, before in zip((first, second), cpu_before, strict=True)]
            sent = await fake.take()
        finally:
            acknowledging.cancel()
            await asyncio.gather(*(tab.close() for tab in everyone), return_exceptions=True)
    print(f'two instances, one PostgreSQL room: {tabs} tabs on each, one reply of {tokens} tokens at {rate:g}/s')
    for (name, group), seconds in zip(watching.items(), cpu, strict=True):
        result = Result(run)
        score(result, group, sent, start, end)
        latency = ' / '.join(f'{result.latency_ms[key]:.0f}' for key in ('p50', 'p95', 'p99', 'max'))
        print(f'  tabs on {name}: latency p50/p95/p99/max {latency} ms, bytes per tab {result.bytes_ratio_mean:.2f}x '
              f'the reply, missing {result.missing}; the instance used {seconds:.2f} s of CPU')


def main() -> None:
    parser = argparse.ArgumentParser(prog='python -m bench.two_instances', description=__doc__.split('\n\n')[0])
    parser.add_argument('--tabs', type=int, default=50, help='tabs watching on each instance')
    parser.add_argument('--tokens', type=int, default=2000)
    parser.add_argument('--rate', type=float, default=100.0, help='tokens per second')
    arguments = parser.parse_args()
    with private_postgres() as db_url, tempfile.TemporaryDirectory(prefix='chat-two-instances-') as workdir:
        asyncio.run(measure(arguments.tabs, arguments.tokens, arguments.rate, Path(workdir), db_url))


if __name__ == '__main__':
    main()
