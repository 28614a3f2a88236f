"""`python -m bench.run`: the whole benchmark, ours against the naive variant, written to docs/benchmarks.md.

    python -m bench.run            # the full run, about 10 minutes
    python -m bench.run --quick    # about 2 minutes: fewer tabs, shorter replies
    python -m bench.run --help     # every option; e.g. --scenarios latency --variants ours --no-write
    python -m bench.run --profile --json results.json   # also sample the server with py-spy; keep the figures
    python -m bench.run --from-json results.json        # write docs/benchmarks.md again from kept figures

Scenarios: `latency` (a sweep over N tabs watching one reply), `size` (replies of T tokens), `concurrent` (several
people asking at once), `history` (opening a room that already holds many messages) and `browsers` (a few real
Chromium tabs beside the simulated ones, timing each token's arrival in the page's DOM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from . import report
from .browser_tabs import available as browser_tabs_available
from .processes import ROOT, FakeServer, wait_for_calm
from .scenarios import Result, Run, measure


@dataclass(frozen=True)
class Plan:
    rate: float = 100.0  # R, tokens per second, in every scenario
    tokens: int = 2000  # T in the latency sweep and the concurrent scenario
    tabs: tuple[int, ...] = (10, 50, 100, 200, 500)  # the latency sweep's N
    compare_at: int = 100  # both variants always run up to this N, so they can be compared there
    sizes: tuple[int, ...] = (500, 2000, 8000)  # T in the size scenario
    size_tabs: int = 10
    naive_max_tokens: int = 2000  # the naive variant falls minutes behind on longer replies: skip them
    concurrent: int = 10  # people asking at once
    concurrent_tabs: int = 100
    history: int = 10_000
    browsers: int = 3  # real Chromium tabs in the `browsers` scenario, beside `browser_tabs` simulated ones
    browser_tabs: int = 20
    browser_tokens: int = 1000
    p99_limit_ms: float = 250.0  # the latency sweep stops past the comparison point once p99 exceeds this
    variants: tuple[str, ...] = ('ours', 'naive')
    scenarios: tuple[str, ...] = ('latency', 'size', 'concurrent', 'history', 'browsers')
    profile: bool = False
    patience: float = 1.5  # a run is cut off after patience × its nominal streaming time + 20 s
    calm_wait: float = 30.0  # before each run, wait up to this long for other processes to use < 0.3 cores


FULL = Plan()
QUICK = Plan(tokens=400, tabs=(10, 50), compare_at=50, sizes=(100, 400, 1600), naive_max_tokens=400,
             concurrent=5, concurrent_tabs=30, calm_wait=10.0, browser_tokens=400)


def numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(',') if part)


def words(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(',') if part)


def parse_plan(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog='python -m bench.run', description=__doc__,
                                     epilog='Options left out take the full (or --quick) plan\'s values; see Plan.',
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='the short version (about 2 minutes)')
    parser.add_argument('--scenarios', type=words, help=f'some of: {",".join(FULL.scenarios)}')
    parser.add_argument('--variants', type=words, help='ours, naive or both')
    parser.add_argument('--tabs', type=numbers, help='N values of the latency sweep, e.g. 10,50,100')
    parser.add_argument('--tokens', type=int, help='T of the latency sweep and the concurrent scenario')
    parser.add_argument('--rate', type=float, help='R, tokens per second')
    parser.add_argument('--sizes', type=numbers, help='T values of the size scenario')
    parser.add_argument('--size-tabs', type=int, help='N of the size scenario')
    parser.add_argument('--concurrent', type=int, help='people asking at once in the concurrent scenario')
    parser.add_argument('--concurrent-tabs', type=int, help='N of the concurrent scenario')
    parser.add_argument('--history', type=int, help='messages stored before opening the room')
    parser.add_argument('--p99-limit', dest='p99_limit_ms', type=float, help='stop the sweep past this p99 (ms)')
    parser.add_argument('--calm-wait', type=float, help='seconds to wait for a quiet machine before each run')
    parser.add_argument('--profile', action='store_true', help="sample the server with py-spy at N=compare_at")
    parser.add_argument('--out', type=Path, default=ROOT / 'docs' / 'benchmarks.md',
                        help='the report to write (default: docs/benchmarks.md)')
    parser.add_argument('--no-write', action='store_true', help='print the figures only')
    parser.add_argument('--json', type=Path, help='also write every result as JSON here')
    parser.add_argument('--from-json', type=Path, help='measure nothing: write the report from saved results '
                                                       '(give the same plan options as the run that saved them)')
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    overrides = {name: value for name, value in vars(args).items()
                 if name in Plan.__dataclass_fields__ and value is not None and value is not False}
    return replace(plan, **overrides), args


def show(result: Result) -> None:
    run = result.run
    if run.history:
        line = (f'page ready {", ".join(f"{s:.2f}" for s in result.page_ready_s)} s, {result.page_messages} messages, '
                f'{result.page_bytes:,} bytes')
    else:
        line = (f'p50/p99 {report.ms(result.latency_ms["p50"])}/{report.ms(result.latency_ms["p99"])} ms, '
                f'bytes×{result.bytes_ratio_mean:.2f}, CPU {result.server_cpu_s:.2f} s, '
                f'{result.commits:.0f} commits, {result.rss_kib_per_tab:.0f} KiB/tab, drops {result.drops}'
                + ('' if result.finished else f' — {result.note}'))
        if result.browser_latency_ms:
            line += (f'; Chromium p50/p99 {report.ms(result.browser_latency_ms["p50"])}/'
                     f'{report.ms(result.browser_latency_ms["p99"])} ms')
    print(f'{run.label:<48} {line}', flush=True)


async def run_plan(plan: Plan, workdir: Path) -> list[Result]:
    results: list[Result] = []

    async def one(run: Run) -> Result:
        deadline = plan.patience * run.tokens / run.rate + 20
        await wait_for_calm(0.3, plan.calm_wait)
        result = await measure(run, fake, workdir, deadline_s=deadline)
        show(result)
        results.append(result)
        return result

    async with FakeServer(workdir) as fake:
        if 'latency' in plan.scenarios:
            for variant in plan.variants:
                for tabs in plan.tabs:
                    result = await one(Run(variant, tabs, plan.tokens, plan.rate))
                    if tabs >= plan.compare_at and result.p99 > plan.p99_limit_ms:
                        break  # larger N would only be later still
        if 'size' in plan.scenarios:
            for variant in plan.variants:
                for tokens in plan.sizes:
                    if variant == 'naive' and tokens > plan.naive_max_tokens:
                        continue
                    if not report.find(results, variant=variant, tabs=plan.size_tabs, tokens=tokens, askers=1):
                        await one(Run(variant, plan.size_tabs, tokens, plan.rate))
        if 'concurrent' in plan.scenarios:
            for variant in plan.variants:
                await one(Run(variant, plan.concurrent_tabs, plan.tokens, plan.rate, askers=plan.concurrent))
        if 'history' in plan.scenarios:
            await one(Run('ours', tabs=1, history=plan.history))
        if 'browsers' in plan.scenarios:
            if browser_tabs_available():
                for variant in plan.variants:
                    await one(Run(variant, plan.browser_tabs, plan.browser_tokens, plan.rate, browsers=plan.browsers))
            else:
                print('browsers: skipped, no Chromium at /usr/bin/chromium or no playwright package', flush=True)
        if plan.profile:
            for variant in plan.variants:
                profiled = await measure(Run(variant, plan.compare_at, plan.tokens, plan.rate, profile=True), fake,
                                         workdir, deadline_s=plan.patience * plan.tokens / plan.rate + 20)
                print(f'profile of {profiled.run.label}:', *(f'  {share:6.1%} {name}' for name, share
                                                             in profiled.profile + profiled.profile_packages),
                      sep='\n')
                results.append(profiled)
    return results


def main(argv: list[str] | None = None) -> None:
    plan, args = parse_plan(argv)
    command = 'python -m bench.run ' + ' '.join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results, minutes = [Result.from_dict(data) for data in saved['results']], saved['minutes']
        command, when, machine = saved['command'], saved['date'], saved['machine']
    else:
        with tempfile.TemporaryDirectory(prefix='bench-') as workdir:
            results = asyncio.run(run_plan(plan, Path(workdir)))
        minutes = (time.monotonic() - started) / 60
        command, when, machine = command.strip(), f'{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}', report.machine()
    print(f'{len(results)} runs in {minutes:.1f} min', flush=True)
    if args.json:
        saved = {'command': command, 'date': when, 'machine': machine, 'minutes': minutes,
                 'results': [result.as_dict() for result in results]}
        args.json.write_text(json.dumps(saved, indent=1))
    if not args.no_write:
        report.write(results, plan, args.out, command=command, minutes=minutes, when=when, machine=machine)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
