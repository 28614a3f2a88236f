"""Markdown for replies, rendered once on the server, with nothing in it that could run or phone home.

Text from the model is text that strangers can steer, so: raw HTML is escaped (shown as text), links
with `javascript:`/`data:` targets lose them (markdown2's safe mode), every image becomes a plain link
(an image would make every viewer's browser fetch it from wherever the text says), and links open in a
new tab without a referrer. markdown2's safe mode has holes (a code span broken by a table let a raw `<script>`
through: found by tests/test_fuzz.py), so its output then goes through an allowlist sanitizer (nh3): only the
tags and attributes Markdown makes survive. The browser runs DOMPurify over the result as well.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import markdown2
import nh3
from pygments.formatters import HtmlFormatter

EXTRAS = ['fenced-code-blocks', 'tables', 'strike', 'cuddled-lists']
IMAGE = re.compile(r'<img src="([^"]*)" alt="([^"]*)"(?: title="[^"]*")? ?/?>')
# What Markdown makes, and nothing else: the tags, the classes Pygments colours code with, table alignment, links.
ALLOWED_TAGS = {'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'code', 'pre', 'blockquote', 'ul',
                'ol', 'li', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'a', 's', 'div', 'span'}
ALLOWED_ATTRIBUTES = {'a': {'href', 'title'}, 'div': {'class'}, 'span': {'class'}, 'code': {'class'},
                      'th': {'style'}, 'td': {'style'}}


@lru_cache(maxsize=512)  # every tab shows the same reply: render it once
def render_markdown(text: str) -> str:
    try:
        rendered = markdown2.markdown(text, safe_mode='escape', extras=EXTRAS)
    except RecursionError:  # thousands of nested quotes or lists: show the text as it is rather than fail
        return f'<p style="white-space: pre-wrap">{html.escape(text)}</p>'
    rendered = IMAGE.sub(_image_as_link, rendered)
    return nh3.clean(rendered, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, filter_style_properties={'text-align'},
                     url_schemes={'http', 'https', 'mailto'}, link_rel='nofollow noopener noreferrer',
                     set_tag_attribute_values={'a': {'target': '_blank'}})


def _image_as_link(match: re.Match[str]) -> str:
    source, alt = match.group(1), match.group(2)  # both already HTML-escaped by markdown2
    return f'<a href="{source}">🖼 {alt or source}</a>'


def code_highlight_css() -> str:
    """Pygments' colours for the code blocks (light and dark page)."""
    return (HtmlFormatter(nobackground=True).get_style_defs('.codehilite') +
            HtmlFormatter(nobackground=True, style='github-dark').get_style_defs('.body--dark .codehilite'))
