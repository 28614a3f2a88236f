"""The two processes a benchmark run starts: the fake OpenAI server and the app, and what /proc tells about them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent  # the repository: main.py and the packages are imported from here
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without pytest's variables (NiceGUI changes behaviour under pytest) and without
    the app's own settings (nothing from the machine may change what is measured)."""
    dropped = ('PYTEST_', 'OPENAI_', 'OPEN_API_', 'CHAT_')
    environment = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    return {**environment, **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, all its threads together."""
    fields = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime: fields 14 and 15 of stat(5)


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from the first line of /proc/stat."""
    fields = [int(value) for value in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


async def wait_for_calm(max_cores: float, patience: float) -> float:
    """Wait, at most `patience` seconds, until the machine (with the benchmark idle) is busy with fewer than
    `max_cores` cores over a second, so other work disturbs a run less; returns the last figure."""
    deadline = time.monotonic() + patience
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(1.0)
        busy = machine_busy_seconds() - before
        if busy < max_cores or time.monotonic() >= deadline:
            return busy


def rss_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise RuntimeError(f'no VmRSS for process {pid}')


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)  # lets uvicorn shut down cleanly (the app ends its replies)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()


class FakeServer:
    """tests/fake_openai.py in its own process (bench/fake_server.py), for the whole benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.base_url = ''
        self._process: asyncio.subprocess.Process | None = None
        self._takes = 0

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> FakeServer:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, '-m', 'bench.fake_server', cwd=ROOT, env=clean_environment(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        self.base_url = (await asyncio.wait_for(self._process.stdout.readline(), 30)).decode().strip()
        if not self.base_url.startswith('http'):
            raise RuntimeError('the fake OpenAI server did not start')
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            await stop_process(self._process)

    async def take(self) -> list[tuple[float, str]]:
        """Every token sent since the last take, with its send time; the reply numbering starts again at 0."""
        assert self._process is not None and self._process.stdin is not None and self._process.stdout is not None
        self._takes += 1
        path = self.workdir / f'sent-{self._takes}.json'
        self._process.stdin.write(f'take {path}\n'.encode())
        await self._process.stdin.drain()
        if (await asyncio.wait_for(self._process.stdout.readline(), 30)).strip() != b'ok':
            raise RuntimeError('the fake OpenAI server did not answer')
        return [(sent_at, token) for sent_at, token in json.loads(path.read_text())]


class AppServer:
    """The app in its own process: `python -m bench.serve` (main.py plus a stats route) or `python -m bench.naive`."""

    def __init__(self, variant: str, db: Path | str, openai_url: str, workdir: Path, name: str = '',
                 flags: tuple[str, ...] = ()) -> None:
        self.variant = variant
        self.flags = flags  # after the defaults, so they win (bench/providers.py picks the provider with them)
        self.db = db  # an SQLite file, or a database URL (bench/two_instances.py)
        self.openai_url = openai_url
        self.log_path = workdir / f'{name or Path(db).stem}.log'
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> AppServer:
        module = {'ours': 'bench.serve', 'naive': 'bench.naive'}[self.variant]
        # The default cap of 1,024 tokens would cut the long replies short.
        flags = ['--no-browser', '--no-seed', '--port', str(self.port), '--db', str(self.db), '--provider', 'openai',
                 '--retries', '0', '--max-tokens', '1000000', *self.flags]
        environment = clean_environment(OPENAI_API_KEY='sk-bench', OPENAI_BASE_URL=self.openai_url)
        with self.log_path.open('wb') as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, '-m', module, *flags, cwd=ROOT, env=environment, stdout=log, stderr=log)
        self._session = aiohttp.ClientSession()
        for _ in range(300):
            await asyncio.sleep(0.1)
            if self._process.returncode is not None:
                break
            try:
                if (await self.stats()).get('ready'):
                    return self
            except aiohttp.ClientError:
                pass
        await self.__aexit__()
        raise RuntimeError(f'the app did not start; its log:\n{self.log_tail()}')

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            await stop_process(self._process)

    async def stats(self) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(f'{self.url}/_bench/stats') as response:
            return await response.json()

    async def collect_garbage(self) -> dict[str, Any]:
        """A full garbage collection in the app, so its memory is read without garbage that is merely pending;
        returns what is alive (see bench/serve.py)."""
        assert self._session is not None
        async with self._session.post(f'{self.url}/_bench/collect') as response:
            response.raise_for_status()
            return await response.json()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])


async def record_profile(pid: int, seconds: float, path: Path) -> Path | None:
    """Sample the app's stacks with py-spy (if installed) for `seconds`; returns the collapsed-stacks file."""
    if shutil.which('py-spy') is None:
        return None
    process = await asyncio.create_subprocess_exec(
        'py-spy', 'record', '--pid', str(pid), '--duration', str(max(1, round(seconds))), '--rate', '200',
        '--format', 'raw', '--nonblocking', '--output', str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await process.wait()
    return path if path.exists() else None
