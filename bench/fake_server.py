"""The fake OpenAI server in a process of its own, so hundreds of tabs in the benchmark's process can't delay it.

`python -m bench.fake_server` prints its base URL, then obeys one command a line on its standard input:
`take PATH` writes every token sent since the last `take` to PATH as JSON (`[[send time, token], ...]`, the
wall-clock time just after the token's chunk was flushed to the socket), forgets them, and answers `ok`.
End of input stops it.

It adds one directive to tests/fake_openai.py's: `[[bench:T]]` streams T tokens ` wK` numbered so that every
reply's are unique: the n-th request since the last `take` sends K = n * 1,000,000 + 0, 1, ... T-1. So when ten
replies stream at once, a tab can still tell whose token it received and when that token was sent.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from tests import fake_openai
from tests.fake_openai import FakeOpenAI, Script

REPLY_STRIDE = 1_000_000  # token numbers per reply: K // REPLY_STRIDE is the reply, K % REPLY_STRIDE the index


class BenchTokens:
    """The `[[bench:T]]` directive's converter; it runs once per request, so it can number the replies."""

    def __init__(self) -> None:
        self.replies = itertools.count()

    def __call__(self, value: str) -> list[str]:
        base = next(self.replies) * REPLY_STRIDE  # itertools.count is thread-safe under the GIL
        return [f' w{base + index}' for index in range(int(value))]


def main() -> None:
    numbering = BenchTokens()
    fake_openai.DIRECTIVES['bench'] = ('tokens', numbering)
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
