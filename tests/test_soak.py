"""The soak test's short form, for CI: the real app in its own process, socket tabs, several replies at once, three
rounds. The full form (200 tabs, 10 replies, 60 s of streaming per round) is `python -m bench.soak`; see its
docstring for everything a round checks."""

from __future__ import annotations

from pathlib import Path

from bench.soak import Round, SoakPlan, SoakReport, soak

SHORT = SoakPlan(tabs=40, replies=4, seconds=6, rate=50, rounds=3)


async def test_tabs_and_replies_come_and_go_and_nothing_is_lost_stuck_or_left_behind(tmp_path: Path) -> None:
    report = await soak(SHORT, tmp_path)
    print(report.summary())  # shown by pytest -s, and in the report when the test fails
    assert report.problems == [], report.summary()
    assert [r.tabs_complete for r in report.rounds] == [SHORT.tabs] * SHORT.rounds


def test_the_judge_reports_memory_growth_past_the_limit_each_round_problem_and_logged_errors() -> None:
    """The checks themselves, on made-up rounds: each kind of failure is reported."""
    clean = {'clients': 0, 'subscribers': 0, 'tasks': 10}
    rounds = [Round(1, tabs_complete=40, replies_stored=4, held=clean, live_blocks=1_000_000),
              Round(2, tabs_complete=40, replies_stored=4, held=clean, live_blocks=1_040_000),
              Round(3, tabs_complete=40, replies_stored=4, held=clean, live_blocks=1_060_000)]
    report = SoakReport(SHORT, rounds, baseline=clean)
    assert [problem.split(' from')[0] for problem in report.problems] == ['live memory grew 6.0%']

    rounds[2].live_blocks = 1_040_000
    assert report.problems == []
    rounds[1].problems.append('2 sockets dropped by the server')
    report.errors.append('nicegui: something broke')
    assert report.problems == ['round 2: 2 sockets dropped by the server', 'logged: nicegui: something broke']
