"""Reply leases: with several instances on one database, how a reply whose instance died is told from a live one.

The instance writing a reply keeps its lease (`Message.lease_until`) a few seconds in the future, by the database's
clock (the machines' clocks may differ); every instance ends, as interrupted, the replies whose lease ran out
(store.py `interrupt_abandoned_replies`). relay.py renews them.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Update
from sqlmodel import Session, col, func, update

from ..models import Message
from ..store import Store


class LeasedStore(Store):
    """The store, with a lease for every reply in progress."""

    def __init__(self, url: str, lease_seconds: float) -> None:
        super().__init__(url)
        self.lease_seconds = lease_seconds

    def adding(self, session: Session, message: Message) -> None:
        if message.status.in_progress:  # a new reply is never without a lease, or a sweep would take it for dead
            session.exec(lease([message.id], self.lease_seconds))  # type: ignore[call-overload, list-item]

    async def renew_leases(self, message_ids: list[int]) -> None:
        """Keep these replies' leases `lease_seconds` in the future."""
        statement = lease(message_ids, self.lease_seconds)
        await self._run(lambda session: session.exec(statement), write=True)  # type: ignore[call-overload]


def lease(message_ids: list[int], seconds: float) -> Update:
    """Set the lease of these replies `seconds` from now by the database's clock."""
    renewed = func.now() + timedelta(seconds=seconds)
    return update(Message).where(col(Message.id).in_(message_ids)).values(lease_until=renewed)
