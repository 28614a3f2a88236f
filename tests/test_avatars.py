"""Avatars are small SVG images drawn by the app (chat/ui/avatars.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from urllib.parse import unquote

from chat.ui.avatars import AVATAR_COLORS, BOT_COLOR, BOT_SVG, avatar_color, person_avatar_svg, person_avatar_url


def test_a_persons_avatar_shows_their_initials_in_their_colour() -> None:
    url = person_avatar_url('Ada Lovelace', 'id-1')
    _, _, color, file_name = url.split('/')
    svg = person_avatar_svg(color, unquote(file_name.removesuffix('.svg')))
    image = ElementTree.fromstring(svg)
    assert image.find('{http://www.w3.org/2000/svg}text').text == 'AL'
    assert image.find('{http://www.w3.org/2000/svg}circle').get('fill') == avatar_color('id-1')


def test_a_name_cannot_inject_markup_or_colours_into_the_image() -> None:
    url = person_avatar_url('<script>alert(1)</script> "x', 'id-2')
    assert '<' not in url and '"' not in url and ')' not in url  # safe inside a CSS url(...) and an attribute
    svg = person_avatar_svg('red"/><script>', '<b>&')
    image = ElementTree.fromstring(svg)  # still well-formed: the letters are text, not markup
    assert image.find('{http://www.w3.org/2000/svg}text').text == '<b>&'
    assert image.find('{http://www.w3.org/2000/svg}circle').get('fill') == BOT_COLOR  # not a colour of ours
    assert avatar_color('id-2') in AVATAR_COLORS
    ElementTree.fromstring(BOT_SVG)
