"""The desktop window: `python main.py --native` opens the room in pywebview (Qt WebEngine), here on Xvfb."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from . import MAIN, NativeApp, child_environment, free_port, port_is_open, wait_until
from .conftest import require

if TYPE_CHECKING:
    from .conftest import TabsFactory

NATIVE_INSTALL = "install it with `pip install -e '.[native]'`"
X_INSTALL = 'install them with `apt-get install xvfb xauth imagemagick` (and the Qt libraries listed in .ci/run)'
# How long the app may take to end once signalled. It ends in well under a second here, but uvicorn's graceful
# shutdown and Qt closing the window can be much slower on a loaded CI machine; what this guards against, an app
# kept alive by its window, never ends at all, so a generous bound costs nothing when the test passes.
STOP_WITHIN = 15.0


def require_native() -> None:
    require(shutil.which('xvfb-run') is not None, f'xvfb-run is missing: {X_INSTALL}')
    require(shutil.which('import') is not None and shutil.which('identify') is not None,
            f'ImageMagick (import, identify) is missing: {X_INSTALL}')
    for module in ('webview', 'qtpy', 'PyQt6', 'PyQt6.QtWebEngineWidgets'):  # parents first: find_spec imports them
        require(importlib.util.find_spec(module) is not None, f'{module} is missing: {NATIVE_INSTALL}')


def colours_in(png: Path) -> int:
    result = subprocess.run(['identify', '-format', '%k', str(png)], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


def test_native_without_pywebview_says_how_to_install_it(tmp_path: Path) -> None:
    """No window library: `--native` must stop at once with the install command, not a traceback."""
    hide_webview = (
        'import runpy, sys\n'
        f'sys.path.insert(0, {str(MAIN.parent)!r})  # as `python main.py` would have it\n'
        "sys.modules['webview'] = None  # as if not installed: importing it fails and find_spec returns None\n"
        f"sys.argv = ['main.py', '--native', '--no-browser', '--no-seed', '--port', '{free_port()}',"
        f" '--db', {str(tmp_path / 'chat.db')!r}]\n"
        f"runpy.run_path({str(MAIN)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, '-c', hide_webview], cwd=tmp_path, env=child_environment(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "--native needs pywebview with Qt, which is not installed" in result.stderr
    assert "pip install -e '.[native]'" in result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


@pytest.mark.browser  # it also asks a headless Chromium tab who is in the room
@pytest.mark.native
# SIGINT is Ctrl-C in the terminal; SIGTERM is what `kill`, a service manager or a shutdown sends. main.py turns
# SIGTERM into Ctrl-C in native mode: without that the app dies at once and leaves its window running.
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name)
def test_the_native_window_joins_the_room_and_closes_with_the_app(tmp_path: Path, open_tabs: TabsFactory,
                                                                  signum: signal.Signals) -> None:
    require_native()
    app = NativeApp(tmp_path, ['--provider', 'demo'])
    app.start(timeout=60)
    try:
        # The window can fail and still leave the server running, so ask the room: a second person, in a
        # headless tab, must find two people here, the window's page being the other one.
        [tab] = open_tabs(app.url, 1)
        drawer = tab.page.locator('.q-drawer')
        wait_until(drawer.inner_text, lambda text: 'Here now (2)' in text, timeout=60,
                   message="the native window's page did not join the room")
        # What a person sees: the window, drawn. A blank or failed window is a colour or two on black.
        shot = wait_until(lambda: app.screenshot(tmp_path / 'native.png'), lambda png: colours_in(png) > 200,
                          timeout=30, message='the window did not draw the page')
        assert shot.stat().st_size > 10_000
        # To the app itself (python main.py), not to xvfb-run, which would only take its screen away.
        os.kill(app.display()[2], signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            app.process.wait(STOP_WITHIN)  # xvfb-run, which ends once the app has (and closes the screen)
        ended = app.process.poll() is not None
    finally:
        returncode = app.stop()  # for an app already ended: notes (and kills) what outlived it, sends nothing
    assert ended, f'the app was still running {STOP_WITHIN:g} s after {signum.name}:\n{app.log()[-3000:]}'
    assert not app.left_running, f'processes outlived the app (the window?) after {signum.name}: {app.left_running}'
    # 0, or 130: uvicorn shuts down gracefully, then raises the signal again, as Ctrl-C programs should (main.py
    # swallows the KeyboardInterrupt that follows). 143 would be the app killed by a SIGTERM it did not handle.
    assert returncode in (0, 130), f'the app did not stop by itself on {signum.name}:\n{app.log()[-3000:]}'
    assert not port_is_open(app.port)
    assert 'Traceback' not in app.log(), app.log()[-3000:]
