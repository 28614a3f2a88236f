"""The first-run demo: the original app's scripted conversation, played at its timings on an empty room."""

from __future__ import annotations

import asyncio
import logging

from .presence import Person
from .room import MessageRefused, Room

log = logging.getLogger(__name__)

IAN = Person('seed-ian', 'Ian')
ABHI = Person('seed-abhi', 'Abhi')

# (seconds from start, who, what): two of them mention @gpt, so two replies stream while a newcomer watches.
SCRIPT: list[tuple[float, Person, str]] = [
    (0.0, IAN, "Hey, glad you're here."),
    (1.0, ABHI, "What's up?"),
    (2.5, IAN, "I'm hoping to show how reactive this room is."),
    (4.2, ABHI, 'Could you show streaming a ChatGPT response?'),
    (7.2, IAN, 'By updating the DB and having every tab follow along?'),
    (9.2, ABHI, "Yeah. @gpt do you think that's a good idea?"),
    (9.8, IAN, "Very clever! Let's see what it thinks."),
    (14.8, IAN, 'Thanks @gpt!'),
]


async def play_script(room: Room, speed: float = 1.0) -> None:
    """Post the script's messages at their times; `speed` > 1 plays it faster (the tests use that). In a room whose
    bots file has no @gpt, the script asks its first bot instead, so that a newcomer still sees two replies."""
    asked = 'gpt' if 'gpt' in room.bots else next(iter(room.bots))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for at, person, text in SCRIPT:
        await asyncio.sleep(max(0.0, start + at / speed - loop.time()))
        try:
            await room.post(person, text.replace('@gpt', f'@{asked}'))
        except MessageRefused as refusal:  # e.g. a scripted @gpt while the previous answer still streams
            log.info('demo script: %s', refusal)
