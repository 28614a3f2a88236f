"""The benchmark's smoke form, for CI: the real app in its own process, five socket tabs, two short replies.

It checks the shape of the cost, never a time: the bytes each tab receives, divided by the reply's own bytes,
must not grow with the reply's length. Re-sending the whole text on every token makes that ratio grow in
proportion to the length (so the bytes grow with its square); the second test shows the check catches that.
"""

from __future__ import annotations

from pathlib import Path

from bench import providers
from bench.processes import FakeServer
from bench.scenarios import Result, Run, measure

TABS, SHORT, LONG, RATE = 5, 200, 800, 400.0
GROWTH_LIMIT = 1.5  # the ratio at LONG tokens may be at most this times the ratio at SHORT tokens


async def bytes_ratios(variant: str, workdir: Path, rate: float = RATE) -> tuple[Result, Result]:
    async with FakeServer(workdir) as fake:
        short = await measure(Run(variant, TABS, SHORT, rate), fake, workdir, deadline_s=30)
        long = await measure(Run(variant, TABS, LONG, rate), fake, workdir, deadline_s=30)
    return short, long


async def test_the_bytes_each_tab_receives_grow_with_the_reply_not_its_square(tmp_path: Path) -> None:
    short, long = await bytes_ratios('ours', tmp_path)
    assert short.finished and long.finished, f'tokens went missing: {short.note} {long.note}'
    assert long.bytes_ratio_mean <= GROWTH_LIMIT * short.bytes_ratio_mean, (
        f'each tab received {short.bytes_ratio_mean:.2f}× the reply at T={SHORT} but {long.bytes_ratio_mean:.2f}× '
        f'at T={LONG}: the bytes grow faster than the reply (is the whole text re-sent on every update?)')


async def test_the_check_catches_the_naive_variant_that_resends_the_whole_text(tmp_path: Path) -> None:
    # Slower, because an overloaded server coalesces a naive tab's queued re-renders and so sends fewer of them.
    short, long = await bytes_ratios('naive', tmp_path, rate=100.0)
    assert long.bytes_ratio_mean > GROWTH_LIMIT * short.bytes_ratio_mean


async def test_the_providers_benchmark_measures_a_provider() -> None:
    rows = await providers.run(['openai'], replies=1, chatter=2)  # the local model's: tests/local_model
    assert len(rows) == 2  # an empty room, then after the chatter
    for row in rows:
        cells = [cell.strip() for cell in row.strip('|').split('|')]
        assert int(cells[5].replace(',', '')) > 0 and float(cells[4]) > 0, row  # tokens, and tokens per second


async def test_the_history_scenario_opens_a_room_that_holds_messages(tmp_path: Path) -> None:
    async with FakeServer(tmp_path) as fake:
        result = await measure(Run('ours', tabs=1, history=300), fake, tmp_path, deadline_s=30)
    assert result.page_messages == 100, result  # the newest 100 of the 300 stored
