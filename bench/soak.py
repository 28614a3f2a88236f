"""`python -m bench.soak`: many tabs, many replies at once, round after round; nothing may go wrong, nothing may stay.

    python -m bench.soak                                      # the full form: 200 tabs, 10 replies, 60 s, 3 rounds
    python -m bench.soak --tabs 40 --replies 4 --seconds 6    # the short form CI runs (tests/test_soak.py)

One app process (`bench.serve`, main.py plus a stats route) against the fake OpenAI server, both real processes on
127.0.0.1. Each round: `tabs` socket tabs open (bench/socket_tab.py), the first `replies` of them ask @gpt at the
same moment, the replies stream for `seconds`, every tab watches every reply, then every tab closes. A round passes
when no error was logged, no socket was dropped, every tab received every token of every reply in order while it
streamed (in the `grew` messages, not only in the finished reply), every reply
was stored whole and done, and once the tabs are gone nothing they used is held: no NiceGUI client, no subscriber to
the room's events, no tab in the reply broadcast, nobody in the room, no reply pending, no more asyncio tasks than
before the first round. And there is no leak: the app's live memory after the last round stays within 5% of its live
memory after the first, live memory being what is alive after a full garbage collection (the blocks Python's
allocator has handed out and not had back). A leak grows it every round. The resident set is reported beside it but
not judged: it also holds freed memory the allocator keeps for reuse, and that grows from round to round too
(measured here: pymalloc's arena high-water mark rises a little each round while the live blocks stay flat).
The summary also gives each round's longest event-loop stall: past about 2 s, NiceGUI drops a tab's socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .fake_server import REPLY_STRIDE
from .processes import AppServer, FakeServer
from .socket_tab import SocketTab, TokenWatch, acknowledge_forever, open_tabs, quiet

STREAMED = '42["grew",'  # the socket messages that carry a growing reply's new text (chat/ui/stream.py)
MEMORY_GROWTH_LIMIT = 0.05  # after the last round, live memory at most 5% above the first round's


@dataclass(frozen=True)
class SoakPlan:
    tabs: int = 200
    replies: int = 10  # at once; asked by the first `replies` tabs
    seconds: float = 60.0  # how long each reply streams
    rate: float = 50.0  # tokens per second, per reply
    rounds: int = 3

    @property
    def tokens(self) -> int:
        return round(self.seconds * self.rate)


@dataclass
class Round:
    number: int
    seconds: float = 0.0
    tabs_complete: int = 0  # tabs that received every token of every reply
    drops: int = 0
    replies_stored: int = 0  # stored as done, with exactly the text the model sent
    held: dict[str, int] = field(default_factory=dict)  # what the app still holds once the tabs are gone
    longest_stall_ms: float = 0.0  # the event loop's latest wake-up during the round
    stall_phase: str = ''  # when it happened: while the tabs opened, while the replies streamed, or as tabs closed
    longest_gc_ms: float = 0.0  # the longest garbage collection pause during the round
    live_blocks: int = 0  # memory blocks alive in Python's allocator, after a full collection
    rss_kib: int = 0
    objects: dict[str, int] = field(default_factory=dict)  # live objects by kind, after a full collection
    problems: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    plan: SoakPlan
    rounds: list[Round] = field(default_factory=list)
    baseline: dict[str, int] = field(default_factory=dict)  # what the app held before the first round
    errors: list[str] = field(default_factory=list)  # records logged at ERROR or above, by the app

    @property
    def memory_growth(self) -> float:
        first, last = self.rounds[0].live_blocks, self.rounds[-1].live_blocks
        return (last - first) / first

    @property
    def rss_growth(self) -> float:
        first, last = self.rounds[0].rss_kib, self.rounds[-1].rss_kib
        return (last - first) / first

    @property
    def problems(self) -> list[str]:
        found = [f'round {r.number}: {problem}' for r in self.rounds for problem in r.problems]
        found += [f'logged: {message}' for message in self.errors]
        if len(self.rounds) >= 2 and self.memory_growth > MEMORY_GROWTH_LIMIT:
            first, last = self.rounds[0].objects, self.rounds[-1].objects
            grown = sorted(((count - first.get(kind, 0), kind) for kind, count in last.items()), reverse=True)[:8]
            found.append(f'live memory grew {self.memory_growth:.1%} from the first round to the last '
                         f'({self.rounds[0].live_blocks:,} -> {self.rounds[-1].live_blocks:,} blocks); objects that '
                         f'grew most: {", ".join(f"{kind} +{count}" for count, kind in grown)}')
        return found

    def summary(self) -> str:
        plan = self.plan
        lines = [f'soak: {plan.tabs} tabs, {plan.replies} replies of {plan.tokens} tokens at {plan.rate:g}/s '
                 f'({plan.seconds:g} s), {plan.rounds} rounds']
        for r in self.rounds:
            stall = f'{r.longest_stall_ms:,.0f} ms ({r.stall_phase})' if r.longest_stall_ms else 'under 100 ms'
            lines.append(f'  round {r.number}: {r.seconds:.0f} s, {r.tabs_complete}/{plan.tabs} tabs got every token, '
                         f'{r.replies_stored}/{plan.replies} replies stored whole, {r.drops} dropped sockets, '
                         f'longest event-loop stall {stall}, longest GC pause {r.longest_gc_ms:,.0f} ms, '
                         f'live memory {r.live_blocks:,} blocks, resident {r.rss_kib / 1024:.1f} MiB, '
                         f'held after: {r.held}')
        if len(self.rounds) >= 2:
            lines.append(f'  live memory, last round vs first: {self.memory_growth:+.1%} (limit '
                         f'+{MEMORY_GROWTH_LIMIT:.0%}); resident set: {self.rss_growth:+.1%} (not judged)')
        lines.append(f'  before the first round the app held: {self.baseline}')
        lines += [f'  PROBLEM: {problem}' for problem in self.problems] or ['  no problems']
        return '\n'.join(lines)


async def held_once_settled(server: AppServer, baseline: dict[str, int] | None,
                            timeout: float = 30.0) -> dict[str, int]:
    """What the app holds once closed tabs had time to be forgotten (NiceGUI waits a few seconds for a reconnect):
    as soon as nothing exceeds `baseline`, or, without one, as soon as no client is left."""
    deadline = time.monotonic() + timeout
    while True:
        held = (await server.stats())['held']
        settled = all(count <= baseline.get(name, 0) for name, count in held.items()) if baseline is not None \
            else held['clients'] == 0
        if settled or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.5)


def newest_message_id(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute('SELECT coalesce(max(id), 0) FROM message').fetchone()[0]


def stored_replies(db: Path, after_id: int, expected: set[str]) -> int:
    """The replies stored after message `after_id` that are done and hold exactly one of the texts sent."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT body FROM message WHERE kind = 'bot' AND status = 'done' AND id > ?",
                                  (after_id,)).fetchall()
    return sum(1 for (body,) in rows if body in expected)


async def soak_round(number: int, plan: SoakPlan, server: AppServer, fake: FakeServer,
                     session: aiohttp.ClientSession, report: SoakReport) -> Round:
    result = Round(number)
    started = time.monotonic()
    phases = [('while the tabs opened', time.time())]  # (phase, wall-clock start), to say when a stall happened
    await fake.take()  # number this round's replies from 0
    first_id = newest_message_id(server.db)
    tabs: list[SocketTab] = []
    acknowledging = asyncio.create_task(acknowledge_forever(tabs))  # it sees the tabs once they are added
    try:
        tabs.extend(await open_tabs(session, server.url, plan.tabs))
        await quiet()
        phases.append(('while the replies streamed', time.time()))
        for tab in tabs:  # watching starts now: the page itself shows earlier rounds' replies, with the same tokens
            tab.watch = TokenWatch(plan.replies, plan.tokens)
            # Only the streamed pieces count: the finished reply's Markdown holds every token too, and would hide
            # pieces that never arrived. (These tabs run no JavaScript, so they cannot ask for a missed piece.)
            tab.watch_only = STREAMED
        question = f'@gpt [[bench:{plan.tokens}]] [[delay:{1 / plan.rate:g}]]'
        await asyncio.gather(*(tab.ask(question) for tab in tabs[:plan.replies]))
        deadline = time.monotonic() + 2 * plan.seconds + 30
        while not all(tab.watch and tab.watch.complete for tab in tabs) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        while (await server.stats())['replies'] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await quiet()
        phases.append(('as the tabs closed', time.time()))
        result.tabs_complete = sum(1 for tab in tabs if tab.watch and tab.watch.complete)
        result.drops = sum(tab.drops for tab in tabs)
    finally:
        acknowledging.cancel()
        await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)
    sent = await fake.take()
    texts: dict[int, list[str]] = {}
    for _, token in sent:
        texts.setdefault(int(token[2:]) // REPLY_STRIDE, []).append(token)
    result.replies_stored = stored_replies(server.db, first_id, {''.join(tokens) for tokens in texts.values()})
    stats = await server.stats()
    stalls = [(ms, at) for at, ms in stats['loop_lags'] if at >= phases[0][1]]
    if stalls:
        result.longest_stall_ms, at = max(stalls)
        result.stall_phase = [phase for phase, start in phases if start <= at][-1]
    result.longest_gc_ms = max((ms for at, ms in stats['gc_pauses'] if at >= phases[0][1]), default=0.0)
    result.held = await held_once_settled(server, report.baseline)
    alive = await server.collect_garbage()
    result.live_blocks, result.objects, result.rss_kib = alive['allocated_blocks'], alive['objects'], server.rss_kib()
    result.seconds = time.monotonic() - started
    result.problems = round_problems(result, plan, len(texts), report.baseline)
    return result


def round_problems(result: Round, plan: SoakPlan, replies_streamed: int, baseline: dict[str, int]) -> list[str]:
    """What went wrong in a round, in a sentence each: nothing, when the soak passes."""
    found = []
    if result.tabs_complete < plan.tabs:
        found.append(f'{plan.tabs - result.tabs_complete} tabs did not receive every token')
    if result.drops:
        found.append(f'{result.drops} sockets dropped by the server')
    if replies_streamed != plan.replies or result.replies_stored != plan.replies:
        found.append(f'{result.replies_stored} of {plan.replies} replies stored whole and done '
                     f'({replies_streamed} streamed)')
    left = {name: count for name, count in result.held.items() if count > baseline.get(name, 0)}
    if left:
        found.append(f'still held after the tabs closed: {left} (before the first round: '
                     f'{ {name: baseline.get(name, 0) for name in left} })')
    return found


async def soak(plan: SoakPlan, workdir: Path, on_round: Any = None) -> SoakReport:
    report = SoakReport(plan)
    # force_close: every page load and every socket gets a connection of its own, as in a browser
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with FakeServer(workdir) as fake, AppServer('ours', workdir / 'soak.db', fake.base_url, workdir) as server, \
            aiohttp.ClientSession(connector=connector) as session:
        # One tab comes and goes first, so what NiceGUI starts only for the first tab (its pruning timers) is in
        # the baseline, not counted as left behind.
        warm_up = await open_tabs(session, server.url, 1)
        await warm_up[0].close()
        report.baseline = await held_once_settled(server, None)
        for number in range(1, plan.rounds + 1):
            report.rounds.append(await soak_round(number, plan, server, fake, session, report))
            if on_round:
                on_round(report.rounds[-1])
        report.errors = (await server.stats())['error_messages']
    return report


def main() -> None:
    defaults = SoakPlan()
    parser = argparse.ArgumentParser(prog='python -m bench.soak', description=__doc__.split('\n\n')[0])
    parser.add_argument('--tabs', type=int, default=defaults.tabs)
    parser.add_argument('--replies', type=int, default=defaults.replies, help='replies streaming at once')
    parser.add_argument('--seconds', type=float, default=defaults.seconds, help='how long each reply streams')
    parser.add_argument('--rate', type=float, default=defaults.rate, help='tokens per second, per reply')
    parser.add_argument('--rounds', type=int, default=defaults.rounds)
    args = parser.parse_args()
    plan = SoakPlan(args.tabs, args.replies, args.seconds, args.rate, args.rounds)
    with tempfile.TemporaryDirectory(prefix='soak-') as workdir:
        report = asyncio.run(soak(plan, Path(workdir), on_round=lambda r: print(f'round {r.number} done', flush=True)))
    print(report.summary())
    sys.exit(1 if report.problems else 0)


if __name__ == '__main__':
    main()
