"""Markdown for replies, rendered once on the server, with nothing in it that could run or phone home.

Text from the model is text that strangers can steer, so: raw HTML is escaped (shown as text), links
with `javascript:`/`data:` targets lose them (markdown2's safe mode), every image becomes a plain link
(an image would make every viewer's browser fetch it from wherever the text says), and links open in a
new tab without a referrer. The browser runs DOMPurify over the result as well.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import markdown2
from pygments.formatters import HtmlFormatter

EXTRAS = ['fenced-code-blocks', 'tables', 'strike', 'cuddled-lists']
IMAGE = re.compile(r'<img src="([^"]*)" alt="([^"]*)"(?: title="[^"]*")? ?/?>')
LINK = re.compile(r'<a href="')


@lru_cache(maxsize=512)  # every tab shows the same reply: render it once
def render_markdown(text: str) -> str:
    try:
        rendered = markdown2.markdown(text, safe_mode='escape', extras=EXTRAS)
    except RecursionError:  # thousands of nested quotes or lists: show the text as it is rather than fail
        return f'<p style="white-space: pre-wrap">{html.escape(text)}</p>'
    rendered = IMAGE.sub(_image_as_link, rendered)
    return LINK.sub('<a target="_blank" rel="nofollow noopener noreferrer" href="', rendered)


def _image_as_link(match: re.Match[str]) -> str:
    source, alt = match.group(1), match.group(2)  # both already HTML-escaped by markdown2
    return f'<a href="{source}">🖼 {alt or source}</a>'


def code_highlight_css() -> str:
    """Pygments' colours for the code blocks (light and dark page)."""
    return (HtmlFormatter(nobackground=True).get_style_defs('.codehilite') +
            HtmlFormatter(nobackground=True, style='github-dark').get_style_defs('.body--dark .codehilite'))
