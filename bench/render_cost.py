"""`python -m bench.render_cost`: what a reply formatted as it streams costs a real browser tab, and the server.

Replies that are all Markdown, from the fake OpenAI server at R tokens a second (about 4 characters each): a long
one (`[[markdown:8000]]`: headings, paragraphs with bold, inline code and links, lists, tables and code blocks, as a
model writes them) and a long code block (`[[code:300]]`, 300 lines of Python). One headless Chromium tab (Debian's,
driven by Playwright) watches each; a script added before the page's own wraps the handler of the `grew` socket
message and times each beat's handling, with the layout it causes (forced at once, instead of at the next frame).

Reported per reply: the browser's time per beat (median, 99th percentile, the longest) and beats in all; the tasks
of 50 ms or more the page ran meanwhile (Chromium's own "long task" measure, which also sees work done outside the
beats, such as drawing a finished reply whole); the bytes the tab's socket received, against the reply's own size;
the app's CPU seconds for the reply. Run it in a checkout
of an earlier commit (with this file copied in) to compare designs: the handler it times is whatever listens to
`grew`. `--write` puts the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from . import report
from .processes import ROOT, AppServer, FakeServer

TIME_BEATS_JS = '''
window.__beats = [];
window.__longTasks = [];  // any task of 50 ms or more (the browser's own measure), the end's full render included
new PerformanceObserver((list) => list.getEntries().forEach((entry) => window.__longTasks.push(entry.duration)))
  .observe({type: 'longtask', buffered: true});
(() => {
  let socket;
  Object.defineProperty(window, 'socket', {
    configurable: true,
    get: () => socket,
    set(value) {
      socket = value;
      const on = value.on.bind(value);
      value.on = (event, handler) => on(event, event !== 'grew' ? handler : (data) => {
        const started = performance.now();
        handler(data);
        void document.body.offsetHeight;  // the layout this beat's changes need, now rather than at the next frame
        window.__beats.push(performance.now() - started);
      });
    },
  });
})();
'''
REPLIES = {'markdown': '[[markdown:8000]]', 'code': '[[code:300]]'}
HEADER = ('| reply | characters | beats | browser ms per beat: p50 / p99 / max | tasks ≥ 50 ms: count / longest | '
          'bytes to the tab | app CPU s |\n|---|---|---|---|---|---|---|')


async def measure(kind: str, rate: float, workdir: Path, fake: FakeServer) -> str:
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    async with AppServer('ours', workdir / f'{kind}.db', fake.base_url, workdir) as app, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context()
        await context.add_init_script(TIME_BEATS_JS)
        page = await context.new_page()
        received = [0]
        page.on('websocket', lambda socket: socket.on(
            'framereceived', lambda payload: received.__setitem__(0, received[0] + len(payload))))
        await page.goto(app.url)
        await page.locator('.my-name').wait_for(timeout=60_000)
        cpu_before, bytes_before = app.cpu_seconds(), received[0]
        box = page.locator('.q-footer input')
        await box.fill(f'@gpt {REPLIES[kind]} [[delay:{1 / rate:g}]]')
        await box.press('Enter')
        reply = page.locator('[data-kind="bot"]').last
        await reply.wait_for(timeout=30_000)
        while await reply.get_attribute('data-status') not in ('done', 'stopped', 'error', 'interrupted'):
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # the last messages reach the tab
        cpu = app.cpu_seconds() - cpu_before
        beats = await page.evaluate('window.__beats')
        long_tasks = await page.evaluate('window.__longTasks')
        text = await reply.locator('.message-body').inner_text()
        await browser.close()
    sent = sum(len(token) for _, token in await fake.take())
    p99 = statistics.quantiles(beats, n=100)[98] if len(beats) >= 2 else max(beats)
    return (f'| {kind} | {sent:,} | {len(beats)} | {statistics.median(beats):.2f} / {p99:.2f} / {max(beats):.2f} | '
            f'{len(long_tasks)} / {max(long_tasks, default=0):.0f} ms | '
            f'{received[0] - bytes_before:,} ({(received[0] - bytes_before) / sent:.2f}× the reply) | {cpu:.2f} |'
            + ('' if len(text) > sent / 4 else ' (the tab shows too little: check the run)'))


async def run(kinds: list[str], rate: float) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-render-') as folder:
        async with FakeServer(Path(folder)) as fake:
            print(HEADER, flush=True)
            for kind in kinds:
                rows.append(await measure(kind, rate, Path(folder), fake))
                print(rows[-1], flush=True)
    return rows


def write(rows: list[str], command: str, rate: float, path: Path) -> None:
    heading = (f'**Formatted as it streams, in a real tab** (`{command.strip()}`, R={rate:g} tokens/s, '
               f'{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {report.machine()}). '
               + ' '.join(__doc__.split('\n\n')[1:3]).replace('\n', ' '))
    report.write_findings_block(path, 'render cost', heading, '\n'.join([HEADER, *rows]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m bench.render_cost', description=__doc__.split('\n\n')[0])
    parser.add_argument('--replies', default='markdown,code', help='some of: markdown, code')
    parser.add_argument('--rate', type=float, default=200, help='tokens per second from the fake model')
    parser.add_argument('--write', action='store_true', help='put the table in docs/benchmarks.md')
    arguments = parser.parse_args(argv)
    rows = asyncio.run(run(arguments.replies.split(','), arguments.rate))
    if arguments.write:
        given = sys.argv[1:] if argv is None else argv
        write(rows, 'python -m bench.render_cost ' + ' '.join(arg for arg in given if arg != '--write'),
              arguments.rate, ROOT / 'docs' / 'benchmarks.md')


if __name__ == '__main__':
    main()
