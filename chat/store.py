"""Every database access. Each call is a short session run on one worker thread.

One thread, because SQLite takes one writer at a time anyway, and a single queue keeps writes in the order they
were asked for: each is handed to the thread when it is called, so a reply's final text can never be overtaken by
an older save. The event loop only awaits the result, so a slow disk never freezes the other tabs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlmodel import Session, col, delete, func, select, update

from .database import create_database_engine, upgrade
from .models import INTERRUPTED_ERROR, Kind, Message, Status, utc_now

log = logging.getLogger(__name__)
T = TypeVar('T')


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_database_engine(url)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix='store')
        self.commits = 0  # counted for tests and the benchmark: coalescing must keep this low

    def _run(self, work: Callable[[Session], T], *, write: bool = False) -> asyncio.Future[T]:
        """Hand `work` to the database thread now, in a session of its own; await the result."""
        def in_session() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                result = work(session)
                if write:
                    session.commit()
                    self.commits += 1
                return result
        return asyncio.get_running_loop().run_in_executor(self._worker, in_session)

    async def open(self) -> None:
        """Create or upgrade the tables; mark replies a previous process left in progress as interrupted."""
        await asyncio.get_running_loop().run_in_executor(self._worker, upgrade, self.engine)
        if count := len(await self.interrupt_abandoned_replies()):
            log.warning('%d reply(s) left in progress by a previous run are now marked interrupted', count)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.dispose)
        self._worker.shutdown(wait=True)

    async def add(self, message: Message) -> Message:
        def work(session: Session) -> Message:
            session.add(message)
            session.flush()  # assigns the id
            self.adding(session, message)
            return message
        return await self._run(work, write=True)

    def adding(self, session: Session, message: Message) -> None:
        """Written with a new message, in its transaction (chat/instances/leases.py gives a new reply its lease)."""

    def save(self, message_id: int, **changes: Any) -> asyncio.Future[None]:
        """Write some fields of one message (a reply's text so far, its status, its usage). Handed to the database
        thread at once: saves are written in the order they were called."""
        statement = update(Message).where(col(Message.id) == message_id).values(**changes, updated_at=utc_now())
        def work(session: Session) -> None:
            session.exec(statement)  # type: ignore[call-overload]
        return self._run(work, write=True)

    async def recent(self, limit: int, before_id: int | None = None) -> list[Message]:
        """The newest `limit` messages (older than `before_id` if given), oldest first."""
        statement = select(Message).order_by(col(Message.id).desc()).limit(limit)
        if before_id is not None:
            statement = statement.where(col(Message.id) < before_id)
        rows = await self._run(lambda session: list(session.exec(statement)))
        return rows[::-1]

    async def context_for(self, question_id: int, limit: int) -> list[Message]:
        """What the bot reads to answer `question_id`: the last `limit` finished messages up to and including it,
        oldest first. Messages posted after the question (another person's, a moment later) are not its context;
        failed, empty and still-running replies are left out."""
        usable = (col(Message.kind) == Kind.USER) | (
            (col(Message.status).in_([Status.DONE, Status.STOPPED])) & (col(Message.body) != '')
        )
        statement = select(Message).where(col(Message.id) <= question_id, usable) \
            .order_by(col(Message.id).desc()).limit(limit)
        rows = await self._run(lambda session: list(session.exec(statement)))
        return rows[::-1]

    async def spending_since(self, moment: datetime) -> tuple[int, list[tuple[str, int | None]]]:
        """On every instance: the prompt and completion tokens of the replies begun since `moment` that ended
        (estimates included), and every reply still in progress, whenever it began: who writes each, and its
        prompt's bound once its request was made (reply.py stores it then)."""
        bots = col(Message.kind) == Kind.BOT
        in_progress = col(Message.status).in_([status for status in Status if status.in_progress])
        spent = func.coalesce(Message.prompt_tokens, 0) + func.coalesce(Message.completion_tokens, 0)
        ended = select(func.coalesce(func.sum(spent), 0)).where(bots, col(Message.created_at) >= moment, ~in_progress)
        writing = select(Message.author_id, Message.prompt_tokens).where(bots, in_progress)

        def work(session: Session) -> tuple[int, list[tuple[str, int | None]]]:
            return int(session.exec(ended).one()), [tuple(row) for row in session.exec(writing)]  # type: ignore[misc]
        return await self._run(work)

    async def replies_since(self, moment: datetime) -> int:
        statement = select(func.count()).select_from(Message).where(col(Message.kind) == Kind.BOT,
                                                                    col(Message.created_at) >= moment)
        return await self._run(lambda session: int(session.exec(statement).one()))

    async def get(self, message_id: int) -> Message | None:
        return await self._run(lambda session: session.get(Message, message_id))

    async def count(self) -> int:
        return await self._run(lambda session: session.exec(select(func.count()).select_from(Message)).one())

    async def interrupt_abandoned_replies(self, sparing: Iterable[int] = ()) -> list[int]:
        """Mark as interrupted the replies in progress that no process is writing any more, except those in
        `sparing` (written by this one); returns their ids. With one instance that is every reply in progress; with
        several (chat/instances/leases.py), those whose lease ran out, by the database's clock."""
        abandoned = col(Message.status).in_([status for status in Status if status.in_progress]) \
            & (col(Message.lease_until).is_(None) | (col(Message.lease_until) < func.now()))
        if sparing := list(sparing):
            abandoned &= col(Message.id).not_in(sparing)
        statement = update(Message).where(abandoned).returning(col(Message.id)).values(
            status=Status.INTERRUPTED, error=INTERRUPTED_ERROR,
            updated_at=utc_now())
        return await self._run(lambda session: list(session.exec(statement).scalars()), write=True)

    async def delete_all(self) -> int:
        return await self._run(lambda session: session.exec(delete(Message)).rowcount, write=True)

