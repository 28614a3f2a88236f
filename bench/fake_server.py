"""The fake OpenAI server in a process of its own, so hundreds of tabs in the benchmark's process can't delay it.

`python -m bench.fake_server` prints its base URL, then obeys one command a line on its standard input:
`take PATH` writes every token sent since the last `take` to PATH as JSON (`[[send time, token], ...]`, the
wall-clock time just after the token's chunk was flushed to the socket), forgets them, and answers `ok`.
End of input stops it.

It adds directives to tests/fake_openai.py's: `[[bench:T]]` streams T tokens ` wK` numbered so that every
reply's are unique: the n-th request since the last `take` sends K = n * 1,000,000 + 0, 1, ... T-1. So when ten
replies stream at once, a tab can still tell whose token it received and when that token was sent. For
bench/render_cost.py, `[[markdown:T]]` streams T tokens of Markdown as a model writes it, and `[[code:L]]` a
code block of L lines.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from tests import fake_openai
from tests.fake_openai import FakeOpenAI, Script, split_reply

REPLY_STRIDE = 1_000_000  # token numbers per reply: K // REPLY_STRIDE is the reply, K % REPLY_STRIDE the index


class BenchTokens:
    """The `[[bench:T]]` directive's converter; it runs once per request, so it can number the replies."""

    def __init__(self) -> None:
        self.replies = itertools.count()

    def __call__(self, value: str) -> list[str]:
        base = next(self.replies) * REPLY_STRIDE  # itertools.count is thread-safe under the GIL
        return [f' w{base + index}' for index in range(int(value))]


SECTION = (
    '## Part {n}: what to know\n\n'
    'The **short answer** is that `step_{n}()` does the work, and the [guide](https://docs.example.org/part-{n}) has '
    'the details. It reads the input *once*, keeps what it needs, and hands the rest on, so nothing is read twice.\n\n'
    '- it checks the input first\n- it keeps a small cache of **recent** results\n- it retries `{n}` times, then '
    'gives up\n  - with a clear message\n- it logs what it did\n\n'
    '```python\ndef step_{n}(items: list[str], limit: int = {n}) -> dict[str, int]:\n'
    '    """Count the items, at most `limit` of each."""\n    counts: dict[str, int] = {{}}\n'
    '    for item in items:\n        if counts.get(item, 0) < limit:\n'
    '            counts[item] = counts.get(item, 0) + 1\n    return counts\n```\n\n'
    '| option | default | what it does |\n|---|---|---|\n| `limit` | {n} | the most of one item |\n'
    '| `items` | none | what to count |\n\n'
    'That covers part {n}; the next part builds on it.\n\n')


def markdown_reply(tokens: int) -> list[str]:
    """About four characters a token of the Markdown a model writes: sections with every kind of block."""
    sections = [SECTION.format(n=n) for n in range(1, tokens * 4 // len(SECTION.format(n=1)) + 2)]
    return split_reply(''.join(sections))[:tokens]


def code_reply(lines: int) -> list[str]:
    """One long code block, as a model writes a whole module."""
    body = '\n'.join(f'    total_{n} = compute(values[{n}], factor={n % 7})  # line {n}' for n in range(lines - 2))
    return split_reply(f'Here is the module:\n\n```python\ndef run(values):\n{body}\n    return total_0\n```\n\n'
                       'That is all of it.')


def main() -> None:
    numbering = BenchTokens()
    fake_openai.DIRECTIVES['bench'] = ('tokens', numbering)
    fake_openai.DIRECTIVES['markdown'] = ('tokens', lambda value: markdown_reply(int(value)))
    fake_openai.DIRECTIVES['code'] = ('tokens', lambda value: code_reply(int(value)))
    with FakeOpenAI(Script(), port=0) as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(' ')
            if command == 'take':
                sent, server.sent[:] = list(server.sent), []
                numbering.replies = itertools.count()
                Path(argument).write_text(json.dumps(sent))
                print('ok', flush=True)


if __name__ == '__main__':
    main()
