"""The command line and the environment reach the settings; `--help` works; bad flags fail clearly."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat.command_line import parse_settings, reason_not_to_start
from chat.config import Settings
from chat.roster import chosen_provider

ROOT = Path(__file__).parent.parent


def test_defaults() -> None:
    settings = parse_settings([])
    assert (settings.host, settings.port, settings.db, settings.model) == ('127.0.0.1', 8080, 'data/chat.db',
                                                                           'gpt-4.1-mini')
    assert settings.seed and settings.show_browser and not settings.native and not settings.reset
    assert settings.db_url == 'sqlite:///data/chat.db'
    assert settings.provider == 'auto' and settings.model_path is None  # what `auto` picks: tests/test_local_model.py


def test_every_flag_reaches_the_settings() -> None:
    settings = parse_settings([
        '--host', '0.0.0.0', '--port', '9000', '--db', 'postgresql+psycopg://u@h/db', '--no-seed', '--no-browser',
        '--native', '--reset', '--yes', '--provider', 'demo', '--model', 'llama3', '--max-tokens', '50',
        '--context-messages', '7', '--system-prompt', 'Hi.', '--retries', '1', '--timeout', '12',
        '--model-path', '~/m.gguf',
    ])
    assert settings == Settings(
        host='0.0.0.0', port=9000, db='postgresql+psycopg://u@h/db', seed=False, show_browser=False, native=True,
        reset=True, yes=True, provider='demo', model='llama3', max_tokens=50, context_messages=7,
        system_prompt='Hi.', max_retries=1, reply_timeout=12, model_path='~/m.gguf',
    )
    assert settings.db_url == 'postgresql+psycopg://u@h/db'  # an SQLAlchemy URL is taken as it is


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-abc')
    monkeypatch.setenv('OPENAI_BASE_URL', 'http://127.0.0.1:11434/v1')
    monkeypatch.setenv('OPENAI_MODEL', 'qwen2.5')
    monkeypatch.setenv('CHAT_DB', '/tmp/x.db')
    monkeypatch.setenv('CHAT_PORT', '8111')
    settings = parse_settings([])
    assert (settings.api_key, settings.base_url, settings.model, settings.db_url, settings.port) == (
        'sk-abc', 'http://127.0.0.1:11434/v1', 'qwen2.5', 'sqlite:////tmp/x.db', 8111)
    assert chosen_provider(settings) == 'openai'
    assert 'sk-abc' not in repr(settings)  # a logged Settings never shows the key
    monkeypatch.setenv('OPENAI_BASE_URL', 'http://h/v1?key=gw')
    with_secrets = parse_settings(['--db', 'postgresql://chat:pg-secret@db/chat'])
    assert 'pg-secret' not in repr(with_secrets) and 'key=gw' not in repr(with_secrets)  # nor a password in a URL
    assert chosen_provider(parse_settings(['--provider', 'demo'])) == 'demo'
    monkeypatch.setenv('CHAT_PROVIDER', 'local')
    monkeypatch.setenv('CHAT_MODEL_PATH', '/models/tiny.gguf')
    assert (parse_settings([]).provider, parse_settings([]).model_path) == ('local', '/models/tiny.gguf')


def test_the_original_readmes_misspelt_key_is_accepted_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv('OPEN_API_KEY', 'sk-typo')
    with caplog.at_level(logging.WARNING):
        assert parse_settings([]).api_key == 'sk-typo'
    assert 'OPENAI_API_KEY' in caplog.text


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith('PYTEST_')}
    return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_help_lists_every_flag() -> None:
    result = run_main('--help')
    assert result.returncode == 0
    for flag in ['--host', '--port', '--db', '--no-seed', '--no-browser', '--native', '--reset', '--yes', '--bots',
                 '--model',
                 '--provider', '--model-path', '--max-tokens', '--context-messages', '--system-prompt', '--timeout',
                 '--retries']:
        assert flag in result.stdout


def test_a_bad_flag_fails_with_a_usage_message() -> None:
    result = run_main('--port', 'eighty')
    assert result.returncode == 2 and 'invalid int value' in result.stderr


def test_reset_without_a_terminal_asks_for_yes(tmp_path: Path) -> None:
    result = run_main('--reset', '--db', str(tmp_path / 'chat.db'), '--no-browser')
    assert result.returncode == 1 and '--yes' in result.stderr


def test_a_database_url_from_the_environment_goes_through_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('DATABASE_URL', 'postgres://chat:pw@db.example:5432/chat')  # as some hosts write it
    assert parse_settings([]).db_url == 'postgresql+psycopg://chat:pw@db.example:5432/chat'
    monkeypatch.setenv('CHAT_DB', 'room.db')  # the app's own variable wins
    assert parse_settings([]).db_url == 'sqlite:///room.db'
    assert parse_settings(['--db', 'postgresql://u@h/db']).db_url == 'postgresql+psycopg://u@h/db'


def test_a_missing_model_file_stops_the_app_with_a_clear_message(tmp_path: Path) -> None:
    result = run_main('--no-browser', '--provider', 'local', '--model-path', str(tmp_path / 'nowhere.gguf'))
    assert result.returncode == 1
    assert f'There is no model file at {tmp_path / "nowhere.gguf"}' in result.stderr


@pytest.mark.parametrize(('flags', 'says'), [
    (['--daily-token-budget', '-1'], 'must be 0 (off) or more, not -1'),
    (['--room-key', 'short-key'], 'a room key needs at least 12 characters (this one has 9)'),
])
def test_a_budget_below_zero_and_a_short_room_key_are_refused_clearly(flags: list[str], says: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(flags)
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_reset_asks_without_showing_the_databases_password(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(sys.stdin, 'isatty', lambda: True)
    monkeypatch.setattr('builtins.input', lambda prompt: asked.append(prompt) or 'no')
    settings = parse_settings(['--reset', '--db', 'postgresql://chat:hunter2@db.example:5432/chat'])
    assert reason_not_to_start(settings) == 'Nothing was deleted.'
    assert 'db.example:5432/chat' in asked[0] and '***' in asked[0] and 'hunter2' not in asked[0]
