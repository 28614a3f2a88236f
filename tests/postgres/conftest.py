"""A private PostgreSQL for the tests: a throw-away cluster made with `initdb` in a temporary folder.

Nothing is installed or changed outside that folder, and no system cluster is needed: Debian's `postgresql`
package is enough (the cluster runs as the `postgres` user when the tests run as root, as in CI, because
PostgreSQL refuses to run as root). Without PostgreSQL these tests skip and say what to install; CI exports
REQUIRE_POSTGRES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

SERVER_BINARIES = sorted(glob.glob('/usr/lib/postgresql/*/bin'))  # Debian keeps initdb and pg_ctl off the PATH
database_numbers = count()


def postgres_tool(name: str) -> str | None:
    return next((f'{folder}/{name}' for folder in reversed(SERVER_BINARIES) if Path(folder, name).exists()),
                shutil.which(name))


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A fresh PostgreSQL server in a temporary folder, while the block runs: the URL of its admin database.
    (Also used by bench/two_instances.py.)"""
    initdb, pg_ctl = postgres_tool('initdb'), postgres_tool('pg_ctl')
    if not initdb or not pg_ctl:
        reason = 'PostgreSQL is not installed: apt-get install postgresql'
        if os.environ.get('REQUIRE_POSTGRES') == '1':
            pytest.fail(f'{reason} (REQUIRE_POSTGRES=1: failing instead of skipping)', pytrace=False)
        pytest.skip(reason)
    # Not under pytest's tmp_path: its folders are private to root, and the server runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix='chat-test-postgres-'))
    data = folder / 'data'
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        shutil.chown(folder, 'postgres')
        as_owner = ['runuser', '-u', 'postgres', '--']
    subprocess.run([*as_owner, initdb, '-D', str(data), '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'],
                   check=True, capture_output=True)
    # Only a Unix socket, in the private folder: no TCP port that another program could take first.
    # fsync off: a test server's data may be lost on a power cut; it is deleted afterwards anyway.
    options = f"-k {folder} -c listen_addresses='' -c fsync=off -c max_connections=200"
    subprocess.run([*as_owner, pg_ctl, '-D', str(data), '-o', options, '-l', str(folder / 'server.log'), '-w',
                    'start'], check=True, capture_output=True)
    try:
        yield f'postgresql+psycopg://postgres@/postgres?host={folder}'
    finally:
        subprocess.run([*as_owner, pg_ctl, '-D', str(data), '-m', 'immediate', 'stop'], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope='session')
def postgres_server() -> Iterator[str]:
    """The private server, for the whole test session."""
    with private_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the test server, for one test."""
    name = f'chat_test_{next(database_numbers)}'
    with psycopg.connect(postgres_server.replace('+psycopg', ''), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE {name}')
    return make_url(postgres_server).set(database=name).render_as_string(hide_password=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is marked `postgres` (`pytest -m postgres` runs them alone, `-m "not postgres"`
    leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.postgres)
