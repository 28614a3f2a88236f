"""`python -m bench.render_cost`: what a reply formatted as it streams costs a real browser tab, and the server.

Replies that are all Markdown, from the fake OpenAI server at R tokens a second (about 4 characters each): a long
one (`[[markdown:8000]]`: headings, paragraphs with bold, inline code and links, lists, tables and code blocks, as a
model writes them) and a long code block (`[[code:300]]`, 300 lines of Python). One headless Chromium tab (Debian's,
driven by Playwright) watches each; a script added before the page's own wraps the handler of the `grew` socket
message and times each beat's handling, with the layout it causes (forced at once, instead of at the next frame).

Reported per reply: the browser's time per beat (median, 99th percentile, the longest) and beats in all; the tasks
of 50 ms or more the page ran (Chromium's own "long task" measure, which also sees work outside the beats), by when
they began: while the page loaded, before the question; in a beat (the beat was that long); when the reply ended
(the last half second: its end, drawn); or at another time; the bytes the tab's socket received, against the
reply's own size, and how many of them were the finished blocks' HTML (what a design that renders in the tab would
not send); the server's time rendering blocks in a beat, the longest and in all (the same text, cut into the same
beats, through `LiveMarkdown` in this process, its renderer warmed up first: it runs on the app's event loop, so
every tab waits for it); the app's CPU seconds for the reply. Run it in a checkout of an earlier commit (with this
file copied in) to compare designs: the handler it times is whatever listens to `grew`. `--write` puts the table in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from chat.config import Settings
from chat.markdown import LiveMarkdown, render_markdown

from . import report
from .fake_server import code_reply, markdown_reply
from .processes import ROOT, AppServer, FakeServer

TIME_BEATS_JS = '''
window.__beats = [];
window.__longTasks = [];  // any task of 50 ms or more (the browser's own measure), the end's full render included
new PerformanceObserver((list) => list.getEntries().forEach((entry) => window.__longTasks.push([entry.startTime,
  entry.duration])))
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
        window.__beats.push([started, performance.now() - started]);
      });
    },
  });
})();
'''
# the directive the fake server obeys, and the same tokens made here (for the server's rendering time)
REPLIES = {'markdown': ('[[markdown:8000]]', lambda: markdown_reply(8000)),
           'code': ('[[code:300]]', lambda: code_reply(300))}
HEADER = ('| reply | characters | beats | browser ms per beat: p50 / p99 / max | tasks ≥ 50 ms, count (longest ms): '
          'loading / in a beat / at the end / other | bytes to the tab (of which blocks\' HTML) | server ms rendering '
          'a beat: max / all | app CPU s |\n|---|---|---|---|---|---|---|---|')
ENDED_JS = '''() => {
  const reply = [...document.querySelectorAll('[data-kind="bot"]')].pop();
  return reply && ['done', 'stopped', 'error', 'interrupted'].includes(reply.dataset.status) && performance.now();
}'''


def blocks_html_chars(payload: str | bytes) -> int:
    """The characters of finished blocks' HTML in one socket.io frame (`42["grew", {id: [offset, text, from, to,
    html]}]`), as encoded."""
    if not isinstance(payload, str) or not payload.startswith('42["grew"'):
        return 0
    pieces = json.loads(payload[2:])[1]
    return sum(len(json.dumps(piece[4])) for piece in pieces.values() if len(piece) == 5)


def server_render_ms(tokens: list[str], tokens_per_beat: int) -> tuple[float, float]:
    """The longest beat's rendering, and all of it, for `tokens` arriving `tokens_per_beat` at a time."""
    render_markdown('# warm\n\n**up** `x` [a](https://e.x)\n\n- i\n\n| a |\n|---|\n| 1 |\n\n```python\nx = 1\n```')
    live, beats = LiveMarkdown(), []
    for start in range(0, len(tokens), tokens_per_beat):
        live.text += ''.join(tokens[start:start + tokens_per_beat])
        started = time.perf_counter()
        live.take_finished(final=start + tokens_per_beat >= len(tokens))
        beats.append((time.perf_counter() - started) * 1000)
    return max(beats), sum(beats)


def long_tasks_by_time(tasks: list[list[float]], beats: list[list[float]], asked: float, ended: float) -> str:
    """The long tasks, each counted once, by when they began: 'count (longest)' for each time of the page."""
    long_beats = [(start, start + duration) for start, duration in beats if duration >= 50]
    kinds: dict[str, list[float]] = {'loading': [], 'in a beat': [], 'at the end': [], 'other': []}
    for start, duration in tasks:
        if start < asked:
            kinds['loading'].append(duration)
        elif any(begin - 5 <= start <= end for begin, end in long_beats):
            kinds['in a beat'].append(duration)
        elif start >= ended - 500:
            kinds['at the end'].append(duration)
        else:
            kinds['other'].append(duration)
    return ' / '.join(f'{len(found)} ({max(found):.0f})' if found else '0' for found in kinds.values())


async def measure(kind: str, rate: float, workdir: Path, fake: FakeServer) -> str:
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    async with AppServer('ours', workdir / f'{kind}.db', fake.base_url, workdir) as app, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context()
        await context.add_init_script(TIME_BEATS_JS)
        page = await context.new_page()
        received, html_chars = [0], [0]

        def count(payload: str | bytes) -> None:
            received[0] += len(payload)
            html_chars[0] += blocks_html_chars(payload)
        page.on('websocket', lambda socket: socket.on('framereceived', count))
        await page.goto(app.url)
        await page.locator('.my-name').wait_for(timeout=60_000)
        cpu_before, bytes_before = app.cpu_seconds(), received[0]
        box = page.locator('.q-footer input')
        await box.fill(f'@gpt {REPLIES[kind][0]} [[delay:{1 / rate:g}]]')
        asked = await page.evaluate('performance.now()')
        await box.press('Enter')
        reply = page.locator('[data-kind="bot"]').last
        await reply.wait_for(timeout=30_000)
        ended = await (await page.wait_for_function(ENDED_JS, polling=50, timeout=600_000)).json_value()
        await asyncio.sleep(1.0)  # the last messages reach the tab
        cpu = app.cpu_seconds() - cpu_before
        beats = await page.evaluate('window.__beats')
        long_tasks = await page.evaluate('window.__longTasks')
        text = await reply.locator('.message-body').inner_text()
        await browser.close()
    sent = sum(len(token) for _, token in await fake.take())
    durations = [duration for _, duration in beats]
    p99 = statistics.quantiles(durations, n=100)[98] if len(durations) >= 2 else max(durations)
    server_max, server_all = server_render_ms(REPLIES[kind][1](), round(rate * Settings().ui_interval))
    tab_bytes = received[0] - bytes_before
    return (f'| {kind} | {sent:,} | {len(beats)} | {statistics.median(durations):.2f} / {p99:.2f} / '
            f'{max(durations):.2f} | {long_tasks_by_time(long_tasks, beats, asked, ended)} | '
            f'{tab_bytes:,} ({tab_bytes / sent:.2f}× the reply; {html_chars[0] / sent:.2f}×) | '
            f'{server_max:.1f} / {server_all:,.0f} | {cpu:.2f} |'
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
