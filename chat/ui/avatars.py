"""Avatars: each person's colour and initials, drawn as small SVG images that the app serves.

A message's avatar is an image URL on the chat message itself (Quasar's `avatar` prop), not an avatar element with
a label inside: the room's busiest moment is a burst of new messages built in every open tab, and each NiceGUI
element costs the server about 0.1 ms to build in each tab. The browser caches each image once for all bubbles.
"""

from __future__ import annotations

import hashlib
from html import escape
from urllib.parse import quote

from fastapi import Response
from nicegui import app

# Material colours (Quasar's red-7, pink-7, ...) dark enough for white initials; CSS colours, so the avatar images
# and the avatar element in the page's header agree.
AVATAR_COLORS = ['#d32f2f', '#c2185b', '#7b1fa2', '#512da8', '#303f9f', '#1565c0', '#00838f', '#00796b',
                 '#2e7d32', '#33691e', '#e65100', '#e64a19', '#6d4c41', '#455a64']
BOT_COLOR = '#424242'
PERSON_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><circle cx="20" cy="20" r="20" '
              'fill="{color}"/><text x="20" y="25.5" font-family="Roboto,Arial,sans-serif" font-size="15" '
              'font-weight="500" fill="#fff" text-anchor="middle">{letters}</text></svg>')
# A little robot face: the bot is not a person, and should not look like one.
BOT_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><circle cx="20" cy="20" r="20" '
           f'fill="{BOT_COLOR}"/><g fill="#fff"><rect x="11" y="14" width="18" height="14" rx="3"/>'
           '<rect x="19" y="8" width="2" height="6"/><circle cx="20" cy="8" r="2"/><rect x="8" y="18" width="2" '
           f'height="6" rx="1"/><rect x="30" y="18" width="2" height="6" rx="1"/></g><g fill="{BOT_COLOR}">'
           '<circle cx="16" cy="20" r="2"/><circle cx="24" cy="20" r="2"/><rect x="16" y="24" width="8" height="1.6" '
           'rx=".8"/></g></svg>')
BOT_AVATAR_URL = '/avatars/bot.svg'
CACHED_FOR_A_DAY = {'Cache-Control': 'public, max-age=86400'}


def avatar_color(person_id: str) -> str:
    """A colour that stays with a person's id (not their name, which they may change)."""
    return AVATAR_COLORS[hashlib.sha256(person_id.encode()).digest()[0] % len(AVATAR_COLORS)]


def initials(name: str) -> str:
    return ''.join(word[0] for word in name.split()[:2]).upper() or '?'


def person_avatar_url(name: str, person_id: str) -> str:
    letters = ''.join(letter for letter in initials(name) if letter.isalnum()) or '?'  # no "/" or control character
    return f'/avatars/{avatar_color(person_id).lstrip("#")}/{quote(letters, safe="")}.svg'


def person_avatar_svg(color: str, letters: str) -> str:
    color = f'#{color}' if f'#{color}' in AVATAR_COLORS else BOT_COLOR  # only our own colours go into the image
    return PERSON_SVG.format(color=color, letters=escape(letters[:4]))  # the letters come from a name anyone typed


def register_avatar_routes() -> None:
    @app.get(BOT_AVATAR_URL)
    def bot_avatar() -> Response:
        return Response(BOT_SVG, media_type='image/svg+xml', headers=CACHED_FOR_A_DAY)

    @app.get('/avatars/{color}/{letters}.svg')
    def person_avatar(color: str, letters: str) -> Response:
        return Response(person_avatar_svg(color, letters), media_type='image/svg+xml', headers=CACHED_FOR_A_DAY)
