"""`python -m bench.providers`: what each provider costs here: time to first token, tokens per second, CPU, memory.

    python -m bench.providers                          # openai (the fake server), demo and local, 3 replies each
    python -m bench.providers --providers local --replies 5
    python -m bench.providers --write                  # also put the table in docs/benchmarks.md

Each provider answers in the app as a person uses it: `bench.serve` (main.py) in its own process, one socket tab
asking `@gpt` questions one after another, first in an empty room, then after 20 messages of chatter (which the
model reads as context). The figures come from what the app stores with each reply: time from the question to the
first token, tokens after it per second, prompt and completion tokens; CPU is the app process's own, per reply;
memory is its resident set after the replies; the event loop's lateness is its longest late wake-up during the
replies (every tab waits while it is late). `openai` is the local fake OpenAI server at 100 tokens/s: it shows
the app's side only (a real API adds its network and queueing). The demo bot's tokens are words at a typing pace.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp

from chat.models import Status

from . import report
from .processes import ROOT, AppServer, FakeServer
from .socket_tab import SocketTab, acknowledge_forever, open_tabs

QUESTIONS = {
    'openai': '@gpt [[bench:300]] [[delay:0.01]]',  # the fake server: 300 tokens at 100 tokens/s
    'demo': '@gpt how do tides work?',
    'local': '@gpt how do tides work?',
}
CHATTER = ('Has anyone tried the new coffee place by the station? I went on Monday and the queue was out the door, '
           'but the flat white was worth it. They also sell pastries, and the cardamom bun is the best I have had.')


@dataclass
class Reply:
    prompt_tokens: int
    completion_tokens: int
    first_token_ms: int
    duration_ms: int
    cpu_s: float
    loop_lag_ms: float  # the event loop's longest late wake-up (bench.serve notes those of 100 ms or more)

    @property
    def tokens_per_second(self) -> float:
        streaming_s = (self.duration_ms - self.first_token_ms) / 1000
        return (self.completion_tokens - 1) / streaming_s if streaming_s > 0 else float('nan')


def newest_reply(db: Path) -> tuple | None:
    """(id, status, prompt tokens, completion tokens, first token ms, duration ms) of the newest bot reply."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT id, status, prompt_tokens, completion_tokens, first_token_ms, duration_ms FROM message "
            "WHERE kind = 'bot' ORDER BY id DESC LIMIT 1").fetchone()


async def answered(db: Path, after_id: int, timeout: float = 180) -> tuple:
    """The figures of the first reply newer than `after_id`, once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (row := newest_reply(db)) and row[0] > after_id and not Status(row[1]).in_progress:
            return row[1:]
        await asyncio.sleep(0.1)
    raise TimeoutError('the reply did not end')


async def measure(provider: str, replies: int, chatter: int, workdir: Path, fake: FakeServer) -> list[str]:
    db = workdir / f'{provider}.db'
    flags = ('--provider', provider, '--max-tokens', '1024', '--messages-per-10s', '1000', '--gpt-per-minute', '1000')
    rows = []
    async with AppServer('ours', db, fake.base_url, workdir, name=provider, flags=flags) as server, \
            aiohttp.ClientSession() as session:
        [tab] = await open_tabs(session, server.url, 1)
        acknowledging = asyncio.create_task(acknowledge_forever([tab]))
        try:
            for room, chatter_now in (('empty room', 0), (f'after {chatter} messages', chatter)):
                for _ in range(chatter_now):
                    await tab.ask(CHATTER)
                    await asyncio.sleep(0.02)
                measured = [await one_reply(tab, server, db, QUESTIONS[provider]) for _ in range(replies)]
                rows.append(row(provider, room, measured, server.rss_kib() / 1024))
        finally:
            acknowledging.cancel()
            await tab.close()
    return rows


async def one_reply(tab: SocketTab, server: AppServer, db: Path, question: str) -> Reply:
    newest_before = (newest_reply(db) or (0,))[0]
    cpu_before, asked_at = server.cpu_seconds(), time.time()
    await tab.ask(question)
    status, prompt_tokens, completion_tokens, first_token_ms, duration_ms = await answered(db, newest_before)
    if status != 'done':
        raise RuntimeError(f'a reply ended {status}; the app log:\n{server.log_tail()}')
    lags = [late_ms for at, late_ms in (await server.stats())['loop_lags'] if at >= asked_at]
    return Reply(prompt_tokens or 0, completion_tokens or 0, first_token_ms, duration_ms,
                 server.cpu_seconds() - cpu_before, max(lags, default=0))


def row(provider: str, room: str, replies: list[Reply], rss_mib: float) -> str:
    median = statistics.median
    first_tokens = ', '.join(f'{reply.first_token_ms:,}' for reply in replies)
    return (f'| {provider} | {room} | {median(r.prompt_tokens for r in replies):,.0f} | {first_tokens} '
            f'| {median(r.tokens_per_second for r in replies):.0f} '
            f'| {median(r.completion_tokens for r in replies):,.0f} | {median(r.cpu_s for r in replies):.2f} '
            f'| {rss_mib:,.0f} | {loop_lag(max(r.loop_lag_ms for r in replies))} |')


def loop_lag(late_ms: float) -> str:
    return f'{late_ms:,.0f} ms' if late_ms else 'none over 100 ms'


HEADER = ('| provider | room | prompt tokens | first token (ms), each reply | tokens/s after it | tokens per reply '
          '| app CPU s per reply | app memory (MiB) | event loop late by |\n|---|---|---|---|---|---|---|---|---|')


async def run(providers: list[str], replies: int, chatter: int) -> list[str]:
    """Print the table as it fills; returns its rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-providers-') as folder:
        workdir = Path(folder)
        async with FakeServer(workdir) as fake:
            print(HEADER, flush=True)
            for provider in providers:
                for line in await measure(provider, replies, chatter, workdir, fake):
                    print(line, flush=True)
                    rows.append(line)
    return rows


METHOD = (
    'Each provider answers in the app as a person uses it (`bench.serve` in its own process, one socket tab asking '
    '`@gpt` {replies} times in turn), first in an empty room, then after {chatter} messages of chatter, which the '
    'model reads as context. The figures are what the app stores with each reply (time from the question to the '
    'first token; tokens after it per second; prompt and completion tokens), the app process\'s CPU per reply and '
    'its resident memory after the replies, and the event loop\'s longest late wake-up. `openai` is the local fake '
    'server at 100 tokens/s, so it shows the app\'s side only; the demo bot\'s tokens are words. Not part of '
    '`bench.run`: the local model needs the `local` extra.')


def write(rows: list[str], command: str, replies: int, chatter: int, path: Path) -> None:
    heading = (f'**The three providers** (`{command}`, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, '
               f'{report.machine()}). ' + METHOD.format(replies=replies, chatter=chatter))
    report.write_findings_block(path, 'providers', heading, '\n'.join([HEADER, *rows]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m bench.providers', description=__doc__.split('\n\n')[0])
    parser.add_argument('--providers', default='openai,demo,local', help='some of: openai, demo, local')
    parser.add_argument('--replies', type=int, default=3, help='questions asked one after another, per room')
    parser.add_argument('--chatter', type=int, default=20, help='messages posted before the second round')
    parser.add_argument('--write', action='store_true', help='put the table in docs/benchmarks.md')
    arguments = parser.parse_args(argv)
    rows = asyncio.run(run(arguments.providers.split(','), arguments.replies, arguments.chatter))
    if arguments.write:
        given = sys.argv[1:] if argv is None else argv
        command = 'python -m bench.providers ' + ' '.join(arg for arg in given if arg != '--write')
        write(rows, command.strip(), arguments.replies, arguments.chatter, ROOT / 'docs' / 'benchmarks.md')


if __name__ == '__main__':
    main()
