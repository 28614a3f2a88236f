"""docs/benchmarks.md and its plots, from a run's results. The analysis written by hand between the
`<!-- findings -->` markers is carried over each time the page is written again."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .scenarios import Result

if TYPE_CHECKING:
    from .run import Plan

FINDINGS = re.compile(r'<!-- findings -->.*?<!-- /findings -->', re.DOTALL)
EMPTY_FINDINGS = '<!-- findings -->\n_No analysis written yet._\n<!-- /findings -->'


def machine() -> str:
    cpu = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')), platform.processor() or 'unknown CPU')
    memory_kib = int(Path('/proc/meminfo').read_text().split()[1])
    load = ' '.join(Path('/proc/loadavg').read_text().split()[:3])
    return (f'{os.cpu_count()} cores ({cpu}), {memory_kib / 1024 ** 2:.0f} GiB RAM, '
            f'Python {platform.python_version()}, load average at the end {load}')


def write_findings_block(path: Path, name: str, heading: str, table: str) -> None:
    """Replace the `<!-- name -->` block inside the findings of docs/benchmarks.md (which `bench.run` keeps) with a
    heading paragraph and a table: the figures of a measurement that is not part of `bench.run`."""
    block = '\n\n'.join([f'<!-- {name} -->', heading, table, f'<!-- /{name} -->'])
    pattern = re.compile(rf'<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->', re.DOTALL)
    text = path.read_text()
    if not pattern.search(text):
        raise SystemExit(f'{path} has no <!-- {name} --> block to replace')
    path.write_text(pattern.sub(lambda _: block, text))
    print(f'wrote the table into {path}')


def ms(value: float) -> str:
    return '∞' if math.isinf(value) else f'{value:,.0f}' if value >= 10 else f'{value:.1f}'


def number(value: float, digits: int = 1) -> str:
    return '–' if math.isnan(value) else '∞' if math.isinf(value) else f'{value:,.{digits}f}'


def ratio(ours: float, naive: float) -> str:
    if not naive or math.isinf(ours) or math.isinf(naive):
        return '–'
    return f'{ours / naive:.3g}×'


def latency(result: Result) -> str:
    figures = result.latency_ms
    text = ' / '.join(ms(figures[name]) for name in ('p50', 'p95', 'p99', 'max'))
    return text if result.finished else f'{text} ({result.note})'


def late(result: Result | None) -> str:
    if result is None:
        return 'not run'
    if result.finished:
        return f'{ms(result.p99)} ms'
    return f'{ms(result.p99)} ms (p50 {ms(result.latency_ms["p50"])} ms; {result.note})'


def find(results: Iterable[Result], **fields: object) -> Result | None:
    return next((result for result in results
                 if all(getattr(result.run, name) == value for name, value in fields.items())), None)


def largest_ok(results: list[Result], variant: str, limit_ms: float, tokens: int) -> str:
    fine = [result.run.tabs for result in results if result.run.variant == variant and result.run.askers == 1
            and result.run.tokens == tokens and result.p99 < limit_ms]
    return str(max(fine)) if fine else 'none'


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def reply_rows(results: list[Result], key: str) -> list[list[str]]:
    rows = []
    for result in sorted(results, key=lambda r: (getattr(r.run, key), r.run.variant != 'ours')):
        run = result.run
        rows.append([str(getattr(run, key)), run.variant, latency(result),
                     f'{result.bytes_ratio_mean:.2f} / {result.bytes_ratio_max:.2f} / {result.wire_ratio:.2f}',
                     number(result.server_cpu_s, 2),
                     f'{result.commits:.0f} ({number(result.commits_per_s)}/s)',
                     f'{result.rss_kib_per_tab:,.0f} / {result.join_cpu_ms:.0f}',
                     f'{result.app_stream_s:.1f} / {result.stream_s:.1f}', str(result.drops),
                     f'{result.gc_pauses} / {result.gc_longest_ms:.0f}',
                     f'{result.bench_cpu_share:.2f} / {result.other_cpu_share:.2f}'])
    return rows


REPLY_HEADER = ['latency p50 / p95 / p99 / max (ms)', 'bytes per tab ÷ reply bytes, mean / max / on the wire',
                'server CPU s per reply', 'DB commits per reply (per s of streaming)',
                'per tab opened: server RSS KiB / CPU ms',
                'streaming s: app / fake server', 'dropped sockets', 'server GC pauses ≥ 20 ms: count / longest ms',
                'CPU cores: tabs / other processes']


def comparisons(results: list[Result], tokens: int, rate: float, tabs: list[int]) -> str:
    rows = []
    for count in tabs:
        ours = find(results, variant='ours', tabs=count, tokens=tokens, askers=1, history=0)
        naive = find(results, variant='naive', tabs=count, tokens=tokens, askers=1, history=0)
        if ours and naive:
            rows.append([str(count), ratio(ours.p99, naive.p99), ratio(ours.bytes_ratio_mean, naive.bytes_ratio_mean),
                         ratio(ours.server_cpu_s, naive.server_cpu_s), ratio(ours.commits, naive.commits)])
    if not rows:
        return '_No N was run for both variants._'
    return table(['N', 'p99 latency', 'bytes per tab', 'server CPU per reply', 'DB commits'], rows)


def plain_ticks(axes: Any, values: list[int]) -> None:
    """Label a log x axis with the values measured, as plain numbers."""
    from matplotlib.ticker import NullLocator

    axes.set_xticks(values, [f'{value:,}' for value in values])
    axes.xaxis.set_minor_locator(NullLocator())


def plot(results: list[Result], images: Path, tokens: int, size_tabs: int) -> list[str]:
    """Two PNGs (latency against N, bytes against T) if matplotlib is installed; returns their Markdown."""
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return ['_Plots need matplotlib: `pip install -e \'.[bench]\'`._']
    images.mkdir(parents=True, exist_ok=True)
    markdown = []
    styles = {'ours': ('tab:blue', 'o'), 'naive': ('tab:red', 's')}

    figure, axes = plt.subplots(figsize=(7, 4))
    for variant, (color, marker) in styles.items():
        chosen = sorted((r for r in results if r.run.variant == variant and r.run.askers == 1
                         and r.run.tokens == tokens and not r.run.history), key=lambda r: r.run.tabs)
        for name, style in (('p50', ':'), ('p99', '-')):
            points = [(r.run.tabs, r.latency_ms[name]) for r in chosen if not math.isinf(r.latency_ms[name])]
            if points:
                axes.plot(*zip(*points, strict=True), style, color=color, marker=marker, label=f'{variant} {name}')
    axes.axhline(250, color='grey', linewidth=0.8, linestyle='--', label='250 ms')
    axes.set(xscale='log', yscale='log', xlabel='tabs watching (N)', ylabel='token-to-tab latency (ms)',
             title=f'Latency against tabs (T={tokens})')
    plain_ticks(axes, sorted({r.run.tabs for r in results if r.run.askers == 1 and not r.run.history}))
    axes.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(images / 'bench-latency.png', dpi=110)
    plt.close(figure)
    markdown.append('![Latency against N](images/bench-latency.png)')

    figure, axes = plt.subplots(figsize=(7, 4))
    for variant, (color, marker) in styles.items():
        chosen = sorted((r for r in results if r.run.variant == variant and r.run.askers == 1
                         and r.run.tabs == size_tabs and not r.run.history), key=lambda r: r.run.tokens)
        if chosen:
            axes.plot([r.run.tokens for r in chosen], [r.bytes_ratio_mean for r in chosen], color=color,
                      marker=marker, label=variant)
    axes.axhline(3, color='grey', linewidth=0.8, linestyle='--', label='target: 3×')
    axes.set(xscale='log', yscale='log', xlabel='tokens per reply (T)', ylabel='bytes per tab ÷ reply bytes',
             title=f'Bytes each tab receives against reply length (N={size_tabs})')
    plain_ticks(axes, sorted({r.run.tokens for r in results if r.run.tabs == size_tabs and not r.run.history}))
    axes.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(images / 'bench-bytes.png', dpi=110)
    plt.close(figure)
    markdown.append('![Bytes against T](images/bench-bytes.png)')
    return markdown


def bytes_growth(first: Result | None, last: Result | None) -> str:
    if not (first and last):
        return 'not run'
    return f'{first.bytes_ratio_mean:.2f} → {last.bytes_ratio_mean:.2f}'


def targets(results: list[Result], plan: Plan) -> str:
    """The issue's targets, each with ours, the naive variant, and whether ours meets it."""
    at = plan.compare_at
    ours = find(results, variant='ours', tabs=at, tokens=plan.tokens, askers=1, history=0)
    naive = find(results, variant='naive', tabs=at, tokens=plan.tokens, askers=1, history=0)
    small = find(results, variant='ours', tabs=plan.size_tabs, tokens=min(plan.sizes), askers=1)
    large = find(results, variant='ours', tabs=plan.size_tabs, tokens=max(plan.sizes), askers=1)
    naive_sizes = sorted((r for r in results if r.run.variant == 'naive' and r.run.tabs == plan.size_tabs
                          and r.run.askers == 1 and r.run.tokens in plan.sizes), key=lambda r: r.run.tokens)
    naive_small, naive_large = (naive_sizes[0], naive_sizes[-1]) if naive_sizes else (None, None)
    together = find(results, variant='ours', askers=plan.concurrent)
    together_naive = find(results, variant='naive', askers=plan.concurrent)
    page = find(results, variant='ours', history=plan.history)
    rows: list[list[str]] = []

    def add(target: str, mine: str, theirs: str, met: bool | None) -> None:
        rows.append([target, mine, theirs, '–' if met is None else 'yes' if met else '**no**'])

    add(f'bytes to each tab ≤ 3× the reply (N={at})', f'{ours.bytes_ratio_mean:.2f}×' if ours else 'not run',
        f'{naive.bytes_ratio_mean:,.0f}×' if naive else 'not run', ours.bytes_ratio_mean <= 3 if ours else None)
    add(f'the same, on the wire (one tab, permessage-deflate; N={at})',
        f'{ours.wire_ratio:.2f}×' if ours else 'not run', f'{naive.wire_ratio:,.1f}×' if naive else 'not run',
        ours.wire_ratio <= 3 if ours else None)
    add(f'bytes ratio no worse at T={max(plan.sizes)} than at T={min(plan.sizes)} (N={plan.size_tabs})',
        bytes_growth(small, large), bytes_growth(naive_small, naive_large),
        large.bytes_ratio_mean <= small.bytes_ratio_mean if small and large else None)
    add(f'p99 latency ≤ 100 ms (N={at})', late(ours), late(naive), ours.p99 <= 100 if ours else None)
    cpu_ratio = ours.server_cpu_s / naive.server_cpu_s if ours and naive and naive.server_cpu_s else math.nan
    add(f'server CPU per reply ≤ 1/10 of the naive variant\'s (N={at})',
        f'{ours.server_cpu_s:.1f} s ({cpu_ratio:.2f} of naive)' if ours else 'not run',
        f'{naive.server_cpu_s:.1f} s' + ('' if naive.finished else ' (cut off: at least this)') if naive else 'not run',
        cpu_ratio <= 0.1 if not math.isnan(cpu_ratio) else None)
    add(f'≤ 5 DB commits per second of streaming (N={at})', f'{ours.commits_per_s:.1f}/s' if ours else 'not run',
        f'{naive.commits_per_s:.0f}/s' if naive else 'not run', ours.commits_per_s <= 5 if ours else None)
    biggest = largest_ok(results, 'ours', plan.p99_limit_ms, plan.tokens)
    add(f'N=500 tabs with p99 < {plan.p99_limit_ms:.0f} ms (the largest N that made it)', biggest,
        largest_ok(results, 'naive', plan.p99_limit_ms, plan.tokens), biggest.isdigit() and int(biggest) >= 500)
    add(f'{plan.concurrent} replies at once to {plan.concurrent_tabs} tabs, p99 < 250 ms',
        late(together), late(together_naive), together.p99 < 250 if together else None)
    if page:
        ready = ', '.join(f'{seconds:.2f}' for seconds in page.page_ready_s)
        add(f'{plan.history:,} stored messages: only the newest 100 sent, ready < 1 s',
            f'{page.page_messages} sent, ready in {ready} s (first, second tab)', '(same code)',
            page.page_messages <= 100 and max(page.page_ready_s) < 1)
    return table(['target', 'ours', 'naive', 'met by ours'], rows)


def write(every_result: list[Result], plan: Plan, path: Path, *, command: str, minutes: float, when: str,
          machine: str) -> None:
    results = [result for result in every_result if not result.run.profile]  # py-spy slows the server a little
    old = path.read_text() if path.exists() else ''
    findings = match.group(0) if (match := FINDINGS.search(old)) else EMPTY_FINDINGS
    images = plot(results, path.parent / 'images', plan.tokens, plan.size_tabs)
    parts = [
        '# Benchmarks',
        'How the room behaves when many tabs watch `@gpt` replies stream, measured by `bench/` (see *How it is '
        'measured* below), beside a **naive** variant kept for comparison: the original demo\'s design ported to '
        'NiceGUI (`bench/naive.py`: the whole text written to the database and re-rendered as Markdown in every tab '
        'on every token). This machine is shared and noisy: compare the two variants\' ratios, not absolute times.',
        f'- **Date**: {when}\n- **Machine**: {machine}\n'
        f'- **Command**: `{command}` ({minutes:.1f} minutes)\n'
        f'- **Reply**: T={plan.tokens} tokens ` w0 w1 …` at R={plan.rate:g} tokens/s from the local fake OpenAI '
        f'server; one reply at a time unless said otherwise',
        '## Against the targets', targets(results, plan),
        '## Findings', findings,
        *scenario_sections(results, plan, images),
        *profile_sections([r for r in every_result if r.run.profile and r.profile]),
        '## How it is measured', METHOD,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n\n'.join(part for part in parts if part) + '\n')


def scenario_sections(results: list[Result], plan: Plan, images: list[str]) -> list[str]:
    """A table for each scenario: the sweep over N, reply lengths, replies at once, a long history, Chromium."""
    def plain(r: Result) -> bool:
        return r.run.askers == 1 and not r.run.history and not r.run.browsers

    sweep = [r for r in results if plain(r) and r.run.tokens == plan.tokens and r.run.tabs in plan.tabs]
    sizes = [r for r in results if plain(r) and r.run.tabs == plan.size_tabs and r.run.tokens in plan.sizes]
    together = [r for r in results if r.run.askers > 1]
    pages = [r for r in results if r.run.history]
    return [
        f'## Latency and cost against the number of tabs (T={plan.tokens}, R={plan.rate:g}/s)',
        table(['N', 'variant', *REPLY_HEADER], reply_rows(sweep, 'tabs')),
        f'The sweep stops past N={plan.compare_at} once p99 exceeds {plan.p99_limit_ms:.0f} ms. Ours ÷ naive:',
        comparisons(results, plan.tokens, plan.rate, list(plan.tabs)),
        *images[:1],
        'A run cut off before every token arrived has an infinite p99 and is left out of the plot.',
        f'## Bytes against reply length (N={plan.size_tabs}, R={plan.rate:g}/s)',
        table(['T', 'variant', *REPLY_HEADER], reply_rows(sizes, 'tokens')),
        f'The naive variant is not run above T={plan.naive_max_tokens}: it falls minutes behind, and its bytes '
        'per tab grow with T² anyway.' if max(plan.sizes) > plan.naive_max_tokens else '',
        *images[1:],
        f'## Replies at once ({plan.concurrent} people ask together, {plan.concurrent_tabs} more tabs watch)',
        table(['replies', 'variant', *REPLY_HEADER], reply_rows(together, 'askers')) if together else '_Not run._',
        'Per-reply figures are the run\'s totals divided by the number of replies.',
        f'## Opening a room that holds {plan.history:,} messages',
        table(['tab', 'page ready (s)', 'messages received', 'bytes of messages'],
              [[f'{"first" if index == 0 else "second"}', f'{seconds:.3f}', str(r.page_messages),
                f'{r.page_bytes:,}'] for r in pages for index, seconds in enumerate(r.page_ready_s)])
        if pages else '_Not run._',
        *chromium_section([r for r in results if r.run.browsers], plan),
    ]


def chromium_section(confirmed: list[Result], plan: Plan) -> list[str]:
    return [
        f'## Confirmed in Chromium ({plan.browsers} real tabs beside {plan.browser_tabs} simulated ones, '
        f'T={plan.browser_tokens})',
        'Each Chromium tab times a token when it enters the page\'s DOM (a MutationObserver; `bench/browser_tabs.py`), '
        'so this includes the browser\'s own work: parsing the socket message, Vue, the DOM.',
        table(['variant', 'simulated tabs: latency p50 / p95 / p99 / max (ms)',
               'Chromium tabs: latency p50 / p95 / p99 / max (ms)'],
              [[r.run.variant, latency(r), ' / '.join(ms(r.browser_latency_ms[name]) for name in
                                                      ('p50', 'p95', 'p99', 'max'))] for r in confirmed])
        if confirmed else '_Not run._',
    ]


def profile_sections(profiles: list[Result]) -> list[str]:
    if not profiles:
        return []
    parts = ['## Where the server\'s time goes (py-spy, during one reply)']
    for result in profiles:
        packages = ', '.join(f'{name} {share:.0%}' for name, share in result.profile_packages)
        parts.append(f'**{result.run.label}**. The app\'s own functions, by their share of the samples in which a '
                     'thread was busy, with what they called:\n\n'
                     + '\n'.join(f'- {share:.0%} `{frame}`' for frame, share in result.profile)
                     + f'\n\nThe package of the innermost Python frame: {packages}.')
    return parts


METHOD = '''\
- **The app** runs as its own process: `python -m bench.serve` (or `bench.naive`) with
  `--no-browser --no-seed --port P --db <tmp>/….db --provider openai --retries 0 --max-tokens 1000000` and
  `OPENAI_API_KEY=sk-bench OPENAI_BASE_URL=<fake>`, without any `PYTEST_*` variable. `bench.serve` is `main.py`'s
  own `main()` plus a read-only `GET /_bench/stats` route (the store's commit counter and the replies in
  progress), the one thing another process can't see. Every run starts a fresh app on an empty database.
- **The model** is `tests/fake_openai.py` in a process of its own (`bench/fake_server.py`), streaming T tokens
  ` wK` at R tokens/s. Each token's **send time** is the wall clock just after its chunk was flushed to the socket,
  recorded by that process. When the app reads more slowly than the fake server writes, the socket buffers fill
  and the fake server's writes wait: the *streaming s: fake server* column then exceeds T/R, and the latencies,
  measured from the actual send times, are lower bounds.
- **The tabs** are simulated in one asyncio process (`bench/socket_tab.py`): each loads the page over HTTP, opens
  NiceGUI's socket.io WebSocket as nicegui.js does (client id from the page, new tab and document ids, implicit
  handshake), answers pings, acknowledges message ids every 3 s, reconnects as a browser would if the server
  drops it, and sends the question as the browser would (the input's value, then its Enter key event). They are
  opened two at a time, each on a connection of its own, until its page is built; the askers are extra tabs,
  not among the N. The tabs' process pauses its own garbage collector while it measures, so its pauses are not
  counted as the server's.
- **Bytes** are all the socket.io event messages the server sent the tab (`update`, `grew`,
  `run_javascript`, ...; not engine.io's pings), as the server wrote them, before WebSocket compression (the
  tabs offer permessage-deflate like a browser, so the server pays for compressing), counted from the question
  to the last message after the replies ended (the question's bubble, the reply's, its new text and its final
  Markdown), divided by the reply's own UTF-8 bytes. *On the wire* is what one tab's share of those messages
  takes once deflated as the server does it (`deflated_size` in bench/socket_tab.py: wsproto's permessage-deflate,
  one compressor per connection, a sync flush per message), since browsers and these tabs negotiate it.
- **Latency** is, for every (tab, token) pair, the token's first arrival in that tab minus its send time; a token
  that never arrived counts as infinitely late. A run is cut off after 1.5 × T/R + 20 s.
- **Server CPU** is user + system time of the app process (all threads) from /proc, from the question to the
  end; **DB commits** are the store's own counter (`Store.commits`) over the same span, and *per second of
  streaming* divides by the app's own first-token-to-end time (`duration_ms - first_token_ms`).
- **GC pauses** are the app's own cyclic garbage collections that took 20 ms or more (timed by a `gc.callbacks`
  hook in `bench.serve`): while one runs, the event loop, and so every tab, waits.
- **Memory per tab** is the app's resident set growth while the N tabs were opened, divided by N.
- **CPU cores: tabs / other processes** is how busy the tabs' process was, and how busy everything else on the
  machine was (not the app, the tabs or the fake server): other load makes every latency worse. Before each run
  the benchmark waits (a while, not forever) for the machine to be quiet.
- **Opening a full room**: the database is filled with finished messages before the app starts; a tab then
  times from its page request to the update that holds the built page, and counts the distinct messages in it.
'''
