"""Shared fixtures. The app under test is `main.py` itself, run by NiceGUI's simulated `user` tabs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nicegui import app
from nicegui.testing import User

from chat.room import Room

from .fake_openai import FakeOpenAI


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / 'chat.db'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine: no real key, no real server."""
    for name in list(os.environ):
        if name.startswith(('OPENAI_', 'OPEN_API_', 'CHAT_')):
            monkeypatch.delenv(name)


@pytest.fixture
def app_args(clean_environment: None, db_path: Path) -> list[str]:
    """The command line `main.py` sees; a test module or test may override this fixture."""
    return ['--no-browser', '--no-seed', '--db', str(db_path), '--provider', 'demo']


@pytest.fixture(autouse=True)
def command_line(monkeypatch: pytest.MonkeyPatch, app_args: list[str]) -> Iterator[None]:
    monkeypatch.setattr(sys, 'argv', ['main.py', *app_args])
    yield


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def openai_args(clean_environment: None, db_path: Path, fake_openai: FakeOpenAI,
                monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the app against the local fake OpenAI server, with short timeouts and no retries."""
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test-secret-key')
    monkeypatch.setenv('OPENAI_BASE_URL', fake_openai.base_url)
    return ['--no-browser', '--no-seed', '--db', str(db_path), '--provider', 'openai', '--retries', '0',
            '--timeout', '2']


@pytest.fixture
def room(user: User) -> Room:
    """The running app's room (available once the `user` fixture has started the app)."""
    return app.state.room


async def eventually(condition: Callable[[], object], timeout: float = 5.0, message: str = '') -> None:
    """Wait until `condition()` is true; fail with `message` if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message or f'condition not met within {timeout} s')
        await asyncio.sleep(0.02)


async def open_room(user: User) -> None:
    """Open the room in this simulated tab and wait until the page is built (it waits for the socket first)."""
    await user.open('/')
    await user.should_see(marker='me')


def texts_of(user: User, marker: str) -> list[str]:
    """The text content of every element carrying `marker` on this tab."""
    with user:
        return [getattr(element, 'text', '') for element in user.find(marker=marker).elements]
