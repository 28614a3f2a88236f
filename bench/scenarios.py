"""One measurement: start the app, open the tabs, ask, watch the replies arrive, and turn it all into figures."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from .browser_tabs import browser_tabs
from .fake_server import REPLY_STRIDE
from .processes import AppServer, FakeServer, cpu_seconds, machine_busy_seconds, record_profile
from .socket_tab import SocketTab, acknowledge_forever, deflated_size, open_tabs, quiet

MESSAGE_ID = '"data-message-id":"'


@dataclass(frozen=True)
class Run:
    variant: str = 'ours'  # 'ours' (the app) or 'naive' (bench/naive.py)
    tabs: int = 10  # N: tabs watching; the askers are extra tabs
    tokens: int = 2000  # T: tokens per reply
    rate: float = 100.0  # R: tokens per second
    askers: int = 1  # replies at once: each asker is another person with one question
    history: int = 0  # messages stored before the app starts; such a run times opening the page, with no reply
    profile: bool = False  # sample the server's stacks with py-spy during the reply
    browsers: int = 0  # real Chromium tabs watching beside the N simulated ones (bench/browser_tabs.py)

    @property
    def label(self) -> str:
        if self.history:
            return f'{self.variant} history={self.history}'
        browsers = f' +{self.browsers} Chromium' if self.browsers else ''
        return f'{self.variant} N={self.tabs}{browsers} T={self.tokens} R={self.rate:g}/s replies={self.askers}'


@dataclass
class Result:
    run: Run
    finished: bool = True  # every watching tab received every token before the deadline
    note: str = ''
    reply_bytes: float = 0.0  # one reply's text, UTF-8
    bytes_ratio_mean: float = 0.0  # message bytes a tab received during the replies / the replies' bytes
    bytes_ratio_max: float = 0.0
    wire_ratio: float = 0.0  # the same for one tab, its messages deflated as the server sends them (permessage-deflate)
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p95 p99 max over (tab, token) pairs
    browser_latency_ms: dict[str, float] = field(default_factory=dict)  # the same in the Chromium tabs, if any
    missing: int = 0  # (tab, token) pairs that never arrived; they count as infinitely late
    server_cpu_s: float = 0.0  # per reply
    commits: float = 0.0  # per reply
    commits_per_s: float = 0.0  # per second of streaming, per reply
    rss_kib_per_tab: float = 0.0
    stream_s: float = 0.0  # first to last token sent by the fake server, mean over the replies
    app_stream_s: float = 0.0  # first token to end by the app's own clock (longer when it falls behind)
    connect_s: float = 0.0  # opening the N tabs, each until its page was built
    join_cpu_ms: float = 0.0  # server CPU per tab opened: its page, and telling the others who arrived
    drops: int = 0  # sockets the server dropped during the replies (the tab then reconnects, as a browser does)
    gc_pauses: int = 0  # the server's garbage collections of 20 ms or more during the replies
    gc_longest_ms: float = 0.0
    bench_cpu_share: float = 0.0  # the tabs' own process: CPU seconds per second during the replies
    other_cpu_share: float = 0.0  # every other process on the machine (not the app, tabs or fake server): cores
    page_ready_s: list[float] = field(default_factory=list)  # history runs: cold and warm tab
    page_messages: int = 0
    page_bytes: int = 0
    profile: list[tuple[str, float]] = field(default_factory=list)  # the app's functions: (name, share of samples)
    profile_packages: list[tuple[str, float]] = field(default_factory=list)  # where the innermost frames were

    @property
    def p99(self) -> float:
        return self.latency_ms.get('p99', math.inf)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        fields = dict(data, run=Run(**data['run']), profile=[tuple(pair) for pair in data.get('profile', [])],
                      profile_packages=[tuple(pair) for pair in data.get('profile_packages', [])])
        return cls(**fields)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.inf
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def measure(run: Run, fake: FakeServer, workdir: Path, *, deadline_s: float | None = None) -> Result:
    """Start a fresh app (empty database, or `run.history` messages), measure, and stop it."""
    db = workdir / f'{run.variant}-{run.tabs}-{run.tokens}-{run.askers}-{run.history}-{time.monotonic_ns()}.db'
    if run.history:
        prefill(db, run.history)
    # force_close: every page load and every socket gets a connection of its own, as in a browser. (A socket
    # upgraded on a kept-alive connection is closed by uvicorn about 5 s after the page's response.)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with AppServer(run.variant, db, fake.base_url, workdir) as server, \
            aiohttp.ClientSession(connector=connector) as session:
        if run.history:
            return await measure_page(run, server, session)
        return await measure_replies(run, server, session, fake, workdir, deadline_s)


@dataclass(frozen=True)
class Meters:
    """What the clocks and counters say at one moment; two of them make a measurement."""

    wall: float
    server_cpu: float
    bench_cpu: float  # this process: the tabs
    fake_cpu: float
    machine_busy: float  # every process on the machine
    commits: int

    @classmethod
    async def read(cls, server: AppServer, fake: FakeServer) -> Meters:
        commits = (await server.stats())['commits']
        return cls(time.time(), server.cpu_seconds(), time.process_time(), cpu_seconds(fake.pid),
                   machine_busy_seconds(), commits)


async def measure_replies(run: Run, server: AppServer, session: aiohttp.ClientSession, fake: FakeServer,
                          workdir: Path, deadline_s: float | None) -> Result:
    result = Result(run)
    askers = await open_tabs(session, server.url, run.askers)
    tabs = list(askers)
    acknowledging = asyncio.create_task(acknowledge_forever(tabs))  # it sees the watchers once they are added
    stack = contextlib.AsyncExitStack()  # the Chromium tabs, if any
    browser_arrivals: list[dict[int, float]] = []
    try:
        watchers = await open_watchers(result, server, session)
        tabs.extend(watchers)
        drops_before = sum(tab.drops for tab in tabs)
        browsers = await stack.enter_async_context(browser_tabs(server.url, run.browsers)) if run.browsers else None
        await quiet()
        await fake.take()  # forget anything sent before, and number this run's replies from 0
        watchers[0].frames = []  # one tab keeps what it receives from now on, to be compressed afterwards

        expected_s = run.tokens / run.rate
        deadline = time.monotonic() + (deadline_s or 2 * expected_s + 30)
        gc.disable()  # this process's own collector pauses would count as the server's latency
        before = await Meters.read(server, fake)
        question = f'@gpt [[bench:{run.tokens}]] [[delay:{1 / run.rate:g}]]'
        await asyncio.gather(*(tab.ask(question) for tab in askers))
        profiling = asyncio.create_task(record_profile(server.pid, expected_s * 0.8, workdir / 'profile.txt')) \
            if run.profile else None
        await until_the_replies_end(server, watchers, deadline)
        after = await Meters.read(server, fake)
        if profiling is not None and (profile_path := await profiling):
            result.profile, result.profile_packages = summarise_profile(profile_path)
        result.drops = sum(tab.drops for tab in tabs) - drops_before
        pauses = [ms for end, ms in (await server.stats())['gc_pauses'] if before.wall <= end <= after.wall]
        result.gc_pauses, result.gc_longest_ms = len(pauses), max(pauses, default=0.0)
        sent = await fake.take()
        browser_arrivals = await browsers.arrivals() if browsers else []
    finally:
        gc.enable()
        await stack.aclose()
        acknowledging.cancel()
        await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)
    count_costs(result, before, after, server.db)
    score(result, watchers, sent, before.wall, after.wall)
    if browser_arrivals:
        result.browser_latency_ms = browser_latencies(browser_arrivals, sent)
    return result


async def open_watchers(result: Result, server: AppServer, session: aiohttp.ClientSession) -> list[SocketTab]:
    """The run's watching tabs, opened on a quiet machine: what joining cost the server, per tab."""
    run = result.run
    await quiet()
    rss_before, cpu_before, started = server.rss_kib(), server.cpu_seconds(), time.monotonic()
    watchers = await open_tabs(session, server.url, run.tabs, replies=run.askers, tokens=run.tokens)
    result.connect_s = time.monotonic() - started
    await quiet()
    result.join_cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / run.tabs
    result.rss_kib_per_tab = (server.rss_kib() - rss_before) / run.tabs
    return watchers


async def until_the_replies_end(server: AppServer, watchers: list[SocketTab], deadline: float) -> None:
    """Every watcher has every token, and the app has ended every reply (final writes, then Markdown in every tab)."""
    while not all(tab.watch and tab.watch.complete for tab in watchers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    while (await server.stats())['replies'] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await quiet(timeout=max(1.0, deadline - time.monotonic()))


def count_costs(result: Result, before: Meters, after: Meters, db: Path) -> None:
    """What the replies cost the server (per reply), and how busy the rest of the machine was meanwhile."""
    wall, askers = after.wall - before.wall, result.run.askers
    result.server_cpu_s = (after.server_cpu - before.server_cpu) / askers
    result.commits = (after.commits - before.commits) / askers
    result.bench_cpu_share = (after.bench_cpu - before.bench_cpu) / wall
    others = (after.machine_busy - before.machine_busy) - (after.server_cpu - before.server_cpu) \
        - (after.bench_cpu - before.bench_cpu) - (after.fake_cpu - before.fake_cpu)
    result.other_cpu_share = max(0.0, others / wall)
    result.app_stream_s = app_stream_seconds(db)
    result.commits_per_s = result.commits / result.app_stream_s if result.app_stream_s else math.nan


def browser_latencies(arrivals: list[dict[int, float]], sent: list[tuple[float, str]]) -> dict[str, float]:
    """Token-to-page latency in the Chromium tabs: each token's first appearance in the DOM minus its send time."""
    latencies = []
    for tab in arrivals:
        for moment, token in sent:
            arrived = tab.get(int(token[2:]))
            latencies.append((arrived - moment) * 1000 if arrived else math.inf)
    latencies.sort()
    return {name: percentile(latencies, fraction)
            for name, fraction in (('p50', 0.5), ('p95', 0.95), ('p99', 0.99), ('max', 1.0))}


def app_stream_seconds(db: Path) -> float:
    """How long the app itself streamed each reply (first token to end, by its own clock), mean over the replies."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT duration_ms - first_token_ms FROM message WHERE kind = 'bot' "
                                  'AND first_token_ms IS NOT NULL AND duration_ms IS NOT NULL').fetchall()
    return sum(row[0] for row in rows) / len(rows) / 1000 if rows else 0.0


def score(result: Result, watchers: list[SocketTab], sent: list[tuple[float, str]], start: float, end: float) -> None:
    run = result.run
    sent_at: dict[int, float] = {}
    reply_bytes: Counter[int] = Counter()
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for moment, token in sent:
        number = int(token[2:])  # ' w17' -> 17
        reply = number // REPLY_STRIDE
        sent_at[number] = moment
        reply_bytes[reply] += len(token.encode())
        first[reply] = min(first.get(reply, moment), moment)
        last[reply] = max(last.get(reply, moment), moment)
    total_reply_bytes = sum(reply_bytes.values()) or 1
    result.reply_bytes = total_reply_bytes / run.askers
    ratios = [tab.bytes_between(start, end) / total_reply_bytes for tab in watchers]
    result.bytes_ratio_mean = sum(ratios) / len(ratios)
    result.bytes_ratio_max = max(ratios)
    if watchers[0].frames is not None:
        result.wire_ratio = deflated_size(watchers[0].frames) / total_reply_bytes
    result.stream_s = sum(last[reply] - first[reply] for reply in first) / max(1, len(first))

    latencies: list[float] = []
    for tab in watchers:
        assert tab.watch is not None
        for reply, arrivals in enumerate(tab.watch.arrivals):
            for index, arrived in enumerate(arrivals):
                sent_time = sent_at.get(reply * REPLY_STRIDE + index)
                if arrived and sent_time is not None:
                    latencies.append((arrived - sent_time) * 1000)
                else:
                    result.missing += 1
    latencies.sort()
    latencies.extend([math.inf] * result.missing)
    result.latency_ms = {name: percentile(latencies, fraction)
                         for name, fraction in (('p50', 0.5), ('p95', 0.95), ('p99', 0.99), ('max', 1.0))}
    result.finished = result.missing == 0
    if result.missing:
        result.note = f'{result.missing / len(latencies):.0%} of (tab, token) pairs not there at the cut-off'


async def measure_page(run: Run, server: AppServer, session: aiohttp.ClientSession) -> Result:
    """Open the room over a full database: how long until the page is built, and how much of the history it got."""
    result = Result(run)
    for _ in range(2):  # the first tab after start-up pays for lazy loading; the second shows the steady state
        tab = SocketTab(session, server.url, keep_frames=True)
        started = time.time()
        await tab.open()
        await asyncio.wait_for(tab.ready.wait(), 60)
        result.page_ready_s.append(tab.ready_at - started)
        await quiet()
        await tab.close()
    assert tab.frames is not None
    page = ''.join(tab.frames)
    result.page_messages = len({page[at:page.index('"', at)] for at in _ends_of(page, MESSAGE_ID)})
    result.page_bytes = sum(tab.message_sizes)
    return result


def _ends_of(text: str, needle: str) -> list[int]:
    ends, at = [], text.find(needle)
    while at >= 0:
        ends.append(at + len(needle))
        at = text.find(needle, at + 1)
    return ends


def prefill(db: Path, count: int) -> None:
    """Store `count` finished messages, people and bot taking turns, as the app's own table holds them."""
    from sqlalchemy import insert
    from sqlmodel import Session, create_engine

    from chat.database import upgrade
    from chat.models import Kind, Message, Status

    engine = create_engine(f'sqlite:///{db}')
    upgrade(engine)  # the tables as the app makes them, by its migrations (it upgrades what it finds)
    start = datetime.now(UTC) - timedelta(minutes=count)
    sentence = 'A stored message from an earlier conversation, long enough to look like a real one. '
    rows = [{
        'kind': Kind.BOT if number % 2 else Kind.USER, 'author': 'GPT' if number % 2 else f'Person {number % 7}',
        'author_id': 'bot' if number % 2 else f'person-{number % 7}', 'body': f'{number}: {sentence * 3}',
        'status': Status.DONE, 'created_at': start + timedelta(minutes=number),
        'updated_at': start + timedelta(minutes=number),
    } for number in range(count)]
    with Session(engine) as session:
        session.execute(insert(Message), rows)
        session.commit()
    engine.dispose()


APP_CODE = ('chat/', 'bench/naive.py')  # the frames of the app's own code (and the naive variant's patches)


def summarise_profile(path: Path, top: int = 12) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """py-spy's collapsed stacks ('f (file.py:1);g (pkg/file.py:2) 17' a line) -> (the app's functions by their share
    of the busy samples, with what they called; the packages the samples' innermost Python frames were in)."""
    app: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(' ')
            if not count.isdigit():
                continue
            samples, frames = int(count), stack.split(';')
            total += samples
            for function in {frame.rsplit(':', 1)[0] + ')' for frame in frames if frame.endswith(')')
                             and any(code in frame for code in APP_CODE) and not frame.startswith('<module>')}:
                app[function] += samples
            location = frames[-1].rpartition('(')[2].split(':')[0]  # 'nicegui/event.py' or 'inspect.py'
            package = location.split('/')[0] if '/' in location else location.removesuffix('.py')
            packages[package or '(unknown)'] += samples
    if not total:
        return [], []
    return ([(name, samples / total) for name, samples in app.most_common(top)],
            [(name, samples / total) for name, samples in packages.most_common(top)])
