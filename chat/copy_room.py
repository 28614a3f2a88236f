"""`python -m chat.copy_room SOURCE TARGET`: copy a room's messages into another database.

    python -m chat.copy_room data/chat.db postgresql+psycopg://chat@localhost/chat

SOURCE and TARGET are database URLs or SQLite file paths, as `--db` takes them. The target is created or upgraded
to the newest schema first and must hold no message yet; every message keeps its id, so replies still point at their
questions. Run it with the app stopped (a reply streaming meanwhile would be copied half-written).
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import text
from sqlmodel import Session, col, func, select

from .config import Settings
from .database import create_database_engine, upgrade
from .models import Message

BATCH = 1000


def copy_room(source_url: str, target_url: str) -> int:
    """Copy every message; returns how many. Refuses a target that already has messages."""
    source, target = create_database_engine(source_url), create_database_engine(target_url)
    try:
        upgrade(source)
        upgrade(target)
        with Session(source) as reading, Session(target) as writing:
            if writing.exec(select(func.count()).select_from(Message)).one():
                raise SystemExit(f'{target.url.render_as_string()} already holds messages: nothing was copied.')
            copied, last_id = 0, 0
            while batch := list(reading.exec(select(Message).where(col(Message.id) > last_id)
                                             .order_by(col(Message.id)).limit(BATCH))):
                for message in batch:
                    reading.expunge(message)
                    writing.add(Message.model_validate(message.model_dump()))
                writing.flush()
                copied, last_id = copied + len(batch), batch[-1].id or last_id
            if target.dialect.name == 'postgresql' and copied:  # new messages continue after the copied ids
                writing.execute(text("SELECT setval(pg_get_serial_sequence('message', 'id'), max(id)) FROM message"))
            writing.commit()
        return copied
    finally:
        source.dispose()
        target.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m chat.copy_room', description=__doc__.split('\n\n')[0])
    parser.add_argument('source', help='database URL or SQLite file to copy from')
    parser.add_argument('target', help='database URL or SQLite file to copy into (no messages yet)')
    arguments = parser.parse_args(argv)
    urls = [Settings(db=place).db_url for place in (arguments.source, arguments.target)]
    count = copy_room(*urls)
    print(f'copied {count:,} message(s)', file=sys.stderr)


if __name__ == '__main__':
    main()
