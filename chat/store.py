"""Every database access. Each call is a short session run on one worker thread.

One thread, because SQLite takes one writer at a time anyway, and a single queue keeps writes in the
order they were asked for (a reply's final text can never be overtaken by an older flush). The event
loop only awaits the result, so a slow disk never freezes the other tabs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, create_engine, delete, func, select, update

from .models import Kind, Message, Status, utc_now
from .schema import upgrade

log = logging.getLogger(__name__)
T = TypeVar('T')


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_database_engine(url)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix='store')
        self.commits = 0  # counted for tests and the benchmark: coalescing must keep this low

    async def _run(self, work: Callable[[Session], T], *, write: bool = False) -> T:
        def in_session() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                result = work(session)
                if write:
                    session.commit()
                    self.commits += 1
                return result
        return await asyncio.get_running_loop().run_in_executor(self._worker, in_session)

    async def open(self) -> None:
        """Create or upgrade the tables; mark replies a previous process left in progress as interrupted."""
        await asyncio.get_running_loop().run_in_executor(self._worker, upgrade, self.engine)
        # Alone on SQLite, any reply left in progress lost its process. On PostgreSQL another instance may be
        # streaming it: only a reply whose lease ran out is over (chat/relay.py).
        count = await self.mark_interrupted(only_expired_leases=self.engine.dialect.name == 'postgresql')
        if count:
            log.warning('%d reply(s) left in progress by a previous run are now marked interrupted', count)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.dispose)
        self._worker.shutdown(wait=True)

    async def add(self, message: Message) -> Message:
        def work(session: Session) -> Message:
            session.add(message)
            session.flush()  # assigns the id
            return message
        return await self._run(work, write=True)

    async def save(self, message_id: int, **changes: Any) -> None:
        """Write some fields of one message (a reply's text so far, its status, its usage)."""
        statement = update(Message).where(col(Message.id) == message_id).values(**changes, updated_at=utc_now())
        await self._run(lambda session: session.exec(statement), write=True)

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

    async def get(self, message_id: int) -> Message | None:
        return await self._run(lambda session: session.get(Message, message_id))

    async def count(self) -> int:
        return await self._run(lambda session: session.exec(select(func.count()).select_from(Message)).one())

    async def mark_interrupted(self, *, only_expired_leases: bool = False) -> int:
        return len(await self.interrupt_replies(only_expired_leases=only_expired_leases))

    async def interrupt_replies(self, *, only_expired_leases: bool, sparing: list[int] | None = None) -> list[int]:
        """Mark replies in progress as interrupted (all, or those whose instance stopped renewing their lease, by
        the database's clock), except those in `sparing`; returns their ids."""
        in_progress = col(Message.status).in_([status for status in Status if status.in_progress])
        if only_expired_leases:
            in_progress &= col(Message.lease_until).is_(None) | (col(Message.lease_until) < func.now())
        if sparing:
            in_progress &= col(Message.id).not_in(sparing)
        statement = update(Message).where(in_progress).returning(col(Message.id)).values(
            status=Status.INTERRUPTED, error='Interrupted: the server stopped while this reply was written.',
            updated_at=utc_now())
        return await self._run(lambda session: list(session.exec(statement).scalars()), write=True)

    async def renew_leases(self, message_ids: list[int], seconds: float) -> None:
        """Keep these replies' leases `seconds` in the future, by the database's clock (not this machine's)."""
        statement = update(Message).where(col(Message.id).in_(message_ids)) \
            .values(lease_until=func.now() + timedelta(seconds=seconds))
        await self._run(lambda session: session.exec(statement), write=True)

    async def delete_all(self) -> int:
        return await self._run(lambda session: session.exec(delete(Message)).rowcount, write=True)


def create_database_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != 'sqlite':
        try:
            return create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as missing:
            raise SystemExit(f'{parsed.get_backend_name()} needs a driver that is not installed ({missing.name}); '
                             "for PostgreSQL: pip install -e '.[postgres]'") from missing
    if parsed.database and parsed.database != ':memory:':
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={'check_same_thread': False, 'timeout': 10})

    @event.listens_for(engine, 'connect')
    def tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers never wait for the writer; NORMAL sync is durable at each commit in WAL mode
        # except on power loss, which is the usual trade for a chat app.
        cursor = dbapi_connection.cursor()
        cursor.execute('PRAGMA journal_mode=WAL')
        cursor.execute('PRAGMA synchronous=NORMAL')
        cursor.execute('PRAGMA busy_timeout=10000')
        cursor.close()

    return engine
