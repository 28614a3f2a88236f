"""Using the app as a person does: `python main.py` in its own process, and real Chromium tabs on it.

The helpers live here, not in conftest.py, so `scripts/screenshots.py` can drive the app the same way.
Nothing here imports pytest: a failure is an AssertionError or a RuntimeError that says what was seen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Locator, Page, Playwright

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / 'main.py'
CHROMIUM = Path('/usr/bin/chromium')
# --no-sandbox: CI runs as root. The background-networking flags: this machine's closed network refuses
# Chromium's own connections, many at a time, and each refusal slows it down and fills the log.
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
MESSAGE_BOX = '.q-footer input'  # the message box; its placeholder names the room's bots

T = TypeVar('T')

MESSAGES_JS = '''() => [...document.querySelectorAll('[data-message-id]')].map(m => ({
    id: Number(m.dataset.messageId),
    kind: m.dataset.kind,
    status: m.dataset.status,
    author: m.querySelector('.q-message-name')?.innerText ?? '',
    sent: m.classList.contains('q-message-sent'),
    text: (m.querySelector('.message-body')?.innerText ?? '').trim(),
}))'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(('127.0.0.1', port)) == 0


def serves(pid: int, port: int) -> bool:
    """Whether the process `pid`, or one it started, listens on `port`. A free port is chosen by binding it and
    letting it go, so another program (another agent's test, an outgoing connection) may take it meanwhile: an
    open port alone does not say the server behind it is ours. Read from /proc (Linux)."""
    listening = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()  # local address (hex ip:port), remote address, state (0A: LISTEN), ..., inode
            if fields[3] == '0A' and int(fields[1].rpartition(':')[2], 16) == port:
                listening.add(f'socket:[{fields[9]}]')
    return bool(listening) and any(not listening.isdisjoint(_open_files(member)) for member in process_tree(pid))


def process_tree(pid: int) -> list[int]:
    """The process and every process it started, and they started, that is still running."""
    parents: dict[int, int] = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        with contextlib.suppress(OSError):
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(')')[2].split()[1])
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member]
    return tree


def _open_files(pid: int) -> set[str]:
    """What the process's file descriptors point to ('socket:[inode]' for a socket)."""
    targets = set()
    with contextlib.suppress(OSError):  # it ended meanwhile
        for descriptor in Path(f'/proc/{pid}/fd').iterdir():
            with contextlib.suppress(OSError):  # that one was closed meanwhile
                targets.add(os.readlink(descriptor))
    return targets


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for `python main.py`: without pytest's variables (with PYTEST_CURRENT_TEST set, NiceGUI
    believes it runs inside its own screen test and crashes), without the machine's keys and chat settings."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(('PYTEST_', 'OPENAI_', 'OPEN_API_', 'CHAT_')) and name != 'DATABASE_URL'}
    env['PYTHONUNBUFFERED'] = '1'  # the log file then shows what happened up to a crash
    env.update(extra)
    return env


def wait_until(probe: Callable[[], T], accept: Callable[[T], object], *, timeout: float = 10.0,
               interval: float = 0.05, message: str = 'condition not met') -> T:
    """Call `probe()` until `accept()` likes what it returns; else fail, showing the last thing it saw."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if accept(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f'{message} within {timeout:g} s; last seen: {seen!r}')
        time.sleep(interval)


class AppProcess:
    """`python main.py` on a free port with its own SQLite file, output in a log file, stopped like Ctrl-C."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / 'app.log'
        self.command = [sys.executable, str(MAIN), '--no-browser', '--no-seed', '--port', str(self.port),
                        '--db', str(workdir / 'chat.db'), *args]
        self.env = env if env is not None else child_environment()
        self.new_session = False  # True: the process and its children get a process group of their own
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/'

    def start(self, timeout: float = 30.0) -> AppProcess:
        """Start the app and wait until it serves its port; if another program took the port first, on another."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            with self.log_path.open('wb') as log:
                # The working directory is the temporary one: NiceGUI keeps tab storage in ./.nicegui there.
                self.process = subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=self.new_session)
            deadline = time.monotonic() + timeout
            while not (port_is_open(self.port) and serves(self.process.pid, self.port)):
                if self.process.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f'the app did not serve on port {self.port} within {timeout:g} s:\n'
                                       f'{self.log()}')
                time.sleep(0.05)
            else:
                return self
            if 'address already in use' not in self.log():
                raise RuntimeError(f'the app exited with {self.process.returncode} before serving:\n{self.log()}')
            self.port = free_port()
            self.command[self.command.index('--port') + 1] = str(self.port)
        raise RuntimeError(f'three free ports in a row were taken before the app could serve on them:\n{self.log()}')

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT, as Ctrl-C: the app closes the room (marks replies in progress) before it exits."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# Runs inside xvfb-run: tells the test which display this is and the app's pid, then becomes the app (same pid).
IN_XVFB = '''#!/bin/sh
echo "$DISPLAY $XAUTHORITY $$" > "$1.part" && mv "$1.part" "$1"
shift
exec "$@"
'''


def live_group_members(group: int) -> list[str]:
    """The processes still running in a process group (zombies excepted), as 'pid command' strings."""
    members = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            text = stat.read_text()
        except OSError:  # it ended while we looked
            continue
        command, _, rest = text.rpartition(')')  # the command may contain spaces and parentheses
        fields = rest.split()
        if int(fields[2]) == group and fields[0] != 'Z':
            members.append(f'{stat.parent.name} {command.partition("(")[2]}')
    return members


class NativeApp(AppProcess):
    """`python main.py --native`: its pywebview (Qt WebEngine) window on a virtual X screen of its own."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str] | None = None,
                 screen: tuple[int, int] = (1280, 900)) -> None:
        super().__init__(workdir, ['--native', *args], env)
        # Qt's WebEngine refuses to run as root with its sandbox on (CI runs as root)
        self.env = {**self.env, 'PYWEBVIEW_GUI': 'qt', 'QTWEBENGINE_CHROMIUM_FLAGS': '--no-sandbox'}
        self.display_path = workdir / 'display.txt'
        launcher = workdir / 'in-xvfb.sh'
        workdir.mkdir(parents=True, exist_ok=True)
        launcher.write_text(IN_XVFB)
        self.command = ['xvfb-run', '-a', '-s', f'-screen 0 {screen[0]}x{screen[1]}x24',
                        'sh', str(launcher), str(self.display_path), *self.command]
        self.new_session = True  # Xvfb, the app, its window and WebEngine's helpers: one group to check and clean
        self.left_running: list[str] = []  # processes of the group still running after the app stopped

    def display(self) -> tuple[str, str, int]:
        """DISPLAY and XAUTHORITY of the virtual screen, and the app's pid."""
        text = wait_until(lambda: self.display_path.exists() and self.display_path.read_text(), bool, timeout=30,
                          message='xvfb-run did not start the app')
        display, xauthority, pid = text.split()
        return display, xauthority, int(pid)

    def screenshot(self, path: Path) -> Path:
        """The whole virtual screen, as a person would see it, with ImageMagick's `import`."""
        display, xauthority, _ = self.display()
        env = {**os.environ, 'DISPLAY': display, 'XAUTHORITY': xauthority}
        subprocess.run(['import', '-window', 'root', str(path)], env=env, check=True, timeout=30,
                       capture_output=True)
        return path

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT to the app itself (xvfb-run then closes the screen); whatever of the group outlives it is
        noted in `left_running`, then killed, so no window is ever left behind."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            if self.display_path.exists():
                os.kill(self.display()[2], signal.SIGINT)
            else:
                self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        deadline = time.monotonic() + 5
        while (members := live_group_members(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.left_running = members
        if members or self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self.process.returncode


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, never a browser of Playwright's own (`playwright install` downloads one)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


class Tab:
    """One browser tab in the room, with what a person sees and does there."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []  # any alert() that ran: there must never be one
        page.on('dialog', self._on_dialog)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f'{dialog.type}: {dialog.message}')
        dialog.dismiss()

    def open(self, url: str) -> Tab:
        self.page.goto(url)
        self.wait_for_room()
        return self

    def wait_for_room(self) -> None:
        """The page is built (it waits for its socket first), and shows who this tab is."""
        self.page.locator('.my-name').wait_for(timeout=15_000)

    def reload(self) -> None:
        self.page.reload()
        self.wait_for_room()

    @property
    def name(self) -> str:
        return self.page.locator('.my-name').inner_text().strip()

    def send(self, text: str) -> None:
        """Type the text and press Enter, then wait until the box is empty: the app clears it once stored."""
        box = self.page.locator(MESSAGE_BOX)
        box.fill(text)
        box.press('Enter')
        wait_until(box.input_value, lambda value: value == '', timeout=5, message=f'{text!r} was not sent')

    def messages(self) -> list[dict[str, Any]]:
        """Every message bubble on the page, oldest first: id, kind, status, author, sent (mine) and text."""
        return self.page.evaluate(MESSAGES_JS)

    def message(self, message_id: int) -> dict[str, Any] | None:
        return next((m for m in self.messages() if m['id'] == message_id), None)

    def last_id(self) -> int:
        return max((m['id'] for m in self.messages()), default=0)

    def ask(self, text: str) -> int:
        """Send a message that mentions @gpt; return the id of the bot's reply once it is on this page."""
        before = self.last_id()
        self.send(text)
        reply = wait_until(
            lambda: [m for m in self.messages() if m['id'] > before and m['kind'] == 'bot'], bool,
            message=f'no bot reply to {text!r} appeared')
        return reply[0]['id']

    def bubble(self, message_id: int) -> Locator:
        """The message's element, for Playwright's own locators."""
        return self.page.locator(f'[data-message-id="{message_id}"]')
