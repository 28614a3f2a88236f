"""Make the README's pictures from a real run of the app, with the offline demo bot (no key, nothing leaves
the machine):

- docs/images/two-tabs.png: two browser tabs side by side while one @gpt reply streams into both, its finished
  blocks already formatted (a highlighted code block among them) and its last paragraph still being written;
- docs/images/native.png: the desktop window (`python main.py --native`), on a virtual X screen.

Needs what the browser tests need (Debian's Chromium, `pip install -e '.[test,native]'`, xvfb and ImageMagick;
.ci/run lists the packages). Run from anywhere: `python scripts/screenshots.py [--out DIR] [--no-native]`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the app's process helpers live with the browser tests

from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import AppProcess, NativeApp, Tab, launch_chromium, wait_until  # noqa: E402

# Wider than the app's 700 px drawer breakpoint: below it the "Here now" list opens over the chat.
TAB_SIZE = {'width': 760, 'height': 720}
QUESTION = '@gpt how does this room stream your replies? Show me some code.'  # 'code': the demo bot writes some


def side_by_side(left: Path, right: Path, out: Path) -> None:
    """Two pictures in a row, with a thin grey line between them: Pillow if it is there, else ImageMagick."""
    try:
        from PIL import Image
    except ImportError:
        convert = shutil.which('magick') or shutil.which('convert')
        if convert is None:
            sys.exit('Combining the two tabs needs Pillow (pip install pillow) or ImageMagick (apt-get install '
                     'imagemagick).')
        subprocess.run([convert, str(left), '-background', '#9e9e9e', '-gravity', 'east', '-splice', '4x0',
                        str(right), '+append', str(out)], check=True)
        return
    with Image.open(left) as a, Image.open(right) as b:
        combined = Image.new('RGB', (a.width + 4 + b.width, max(a.height, b.height)), '#9e9e9e')
        combined.paste(a, (0, 0))
        combined.paste(b, (a.width + 4, 0))
        combined.save(out)


def wait_mid_reply(tab: Tab, reply_id: int) -> None:
    """Until the code block is finished (and highlighted) and the paragraph after it is being written."""
    tail = tab.bubble(reply_id).locator('.reply-tail')
    wait_until(lambda: tab.bubble(reply_id).locator('.codehilite').count() and len(tail.inner_text()), bool,
               timeout=30, message='the reply did not reach the paragraph after its code block')


def two_tabs(workdir: Path, out: Path) -> None:
    with AppProcess(workdir / 'two-tabs', ['--provider', 'demo']) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport=TAB_SIZE, device_scale_factor=1)
        first, second = (Tab(context.new_page()).open(app.url) for _ in range(2))
        first.send('Hi! Anyone here?')
        second.send(f'Hi {first.name}! Let us ask the bot.')
        reply_id = second.ask(QUESTION)
        wait_mid_reply(first, reply_id)
        shots = [workdir / 'first.png', workdir / 'second.png']
        for tab, shot in zip((first, second), shots, strict=True):  # as close together as two shots can be
            tab.page.screenshot(path=str(shot))
        side_by_side(*shots, out)
        if first.message(reply_id)['status'] == 'streaming':  # stop the demo bot so the app shuts down at once
            with contextlib.suppress(PlaywrightError):  # unless it ended meanwhile, and its Stop button with it
                first.bubble(reply_id).get_by_role('button', name='Stop').click(timeout=2000)
        browser.close()


def native_window(workdir: Path, out: Path) -> None:
    for tool in ('xvfb-run', 'import', 'convert'):
        if shutil.which(tool) is None:
            sys.exit(f'{tool} is missing: apt-get install xvfb xauth imagemagick (and see .ci/run for Qt\'s libraries)')
    app = NativeApp(workdir / 'native', ['--provider', 'demo'])
    app.start(timeout=60)
    try:
        with sync_playwright() as playwright:  # a second person, in a browser tab, talks to the window's person
            browser = launch_chromium(playwright)
            visitor = Tab(browser.new_page(viewport=TAB_SIZE)).open(app.url)
            wait_until(visitor.page.locator('.q-drawer').inner_text, lambda text: 'Here now (2)' in text,
                       timeout=60, message="the window's page did not join the room")
            visitor.send('Hello from a browser tab! This window is the same room.')
            reply_id = visitor.ask(QUESTION)
            wait_mid_reply(visitor, reply_id)
            screen = app.screenshot(workdir / 'screen.png')
            # The window sits on a black screen with no window manager: trimming the black leaves the window.
            subprocess.run(['convert', str(screen), '-trim', '+repage', str(out)], check=True)
            visitor.bubble(reply_id).get_by_role('button', name='Stop').click()
            browser.close()
    finally:
        app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=REPO / 'docs' / 'images', help='folder for the PNG files')
    parser.add_argument('--no-native', action='store_true', help='skip the desktop window picture')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='chat-screenshots-') as workdir:
        two_tabs(Path(workdir), args.out / 'two-tabs.png')
        print(args.out / 'two-tabs.png')
        if not args.no_native:
            native_window(Path(workdir), args.out / 'native.png')
            print(args.out / 'native.png')


if __name__ == '__main__':
    main()
