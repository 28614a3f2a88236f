"""What a reply looks like: its Markdown cut into blocks, each block rendered once, to HTML that cannot run anything.

One renderer for a reply in every state. While it streams, each block (a paragraph, a heading, a list item, a quote,
a table, a fenced or indented code block) is rendered the moment it is finished, and the tabs show the block being
written as text; a finished reply is the same blocks, rendered the same way. So what a reader saw while the reply
grew is what stays: at most the last block gains its formatting. Every code block, a list item's too, is drawn by
Pygments in the same box. A block knows nothing of the others, so a reference link (`[text][1]`) is resolved only
by a definition in its own block; a definition elsewhere is shown as a line of text with its address as a link.

Text from the model is text that strangers can steer, so: raw HTML is escaped (shown as text), links with
`javascript:`/`data:` targets lose them (markdown2's safe mode), every image becomes a plain link (an image would
make every viewer's browser fetch it from wherever the text says), and links open in a new tab without a referrer,
with their address's host beside a text that differs from it. markdown2's safe mode has holes (a code span cut by
a table let a raw `<script>` through: found by tests/test_fuzz.py), so its output then goes through an allowlist
sanitizer (nh3): only the tags and attributes Markdown makes survive. The browser runs DOMPurify as well.
"""

from __future__ import annotations

import html
import logging
import re
from functools import lru_cache
from urllib.parse import urlsplit

import markdown2
import nh3
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.style import Style
from pygments.styles import get_style_by_name
from pygments.token import STANDARD_TYPES, Text, Whitespace, _TokenType
from pygments.util import ClassNotFound

from .blocks import FENCE, Block, BlockSplitter, closes

log = logging.getLogger(__name__)


def split_blocks(text: str) -> list[tuple[str, str]]:
    """A whole text's blocks, as (kind, text)."""
    return [(block.kind, text[block.start:block.end]) for block in BlockSplitter().split(text, final=True)]


@lru_cache(maxsize=512)  # every tab shows the same reply: render it once
def render_markdown(text: str) -> str:
    """A finished reply's HTML: its blocks, each rendered as it was while the reply streamed."""
    return ''.join(rendered(text, block) for block in BlockSplitter().split(text, final=True))


class LiveMarkdown:
    """A reply's text while it grows, and its finished blocks, each rendered once."""

    def __init__(self, text: str = '') -> None:
        self.text = text
        self.html = ''  # the finished blocks, rendered
        self.splitter = BlockSplitter()
        self.take_finished()  # text the reply had before this object (another instance's reply, followed)

    @property
    def done(self) -> int:
        """The finished blocks cover the text up to here; the rest is the block being written."""
        return self.splitter.unfinished_from

    def take_finished(self, *, final: bool = False) -> tuple[int, int, str] | None:
        """The blocks finished since the last call, rendered: (where they start, where they end, their HTML).
        `final`: the reply has ended, so the block being written is finished too."""
        start = self.done
        blocks = self.splitter.split(self.text, final=final)
        if not blocks and self.done == start:
            return None
        new_html = ''.join(rendered(self.text, block) for block in blocks)
        self.html += new_html
        return start, self.done, new_html


def rendered(text: str, block: Block) -> str:
    """One block of `text`, rendered."""
    code = tuple((start - block.start, end - block.start) for start, end in block.code)
    return render_block(block.kind, text[block.start:block.end], code)


@lru_cache(maxsize=4096)
def render_block(kind: str, block: str, code: tuple[tuple[int, int], ...] = ()) -> str:
    """`code`: where fenced code blocks lie inside a list item (from blocks.py), as offsets in `block`."""
    try:
        if kind == 'fence':
            return render_code(one_line_end(block))
        if kind == 'code':  # indented by four spaces or a tab
            return code_box(re.sub(r'^(?:\t| {1,4})', '', one_line_end(block), flags=re.MULTILINE), '')
        rendered_html = sanitized(LINK.sub(show_link_host, IMAGE.sub(image_as_link, markdown_with_code(block, code))))
        return EMPTY_PARAGRAPH.sub('', rendered_html)  # markdown2 leaves some around empty list items
    except RecursionError:  # thousands of nested quotes or lists: the text as it is, rather than fail
        return f'<p class="message-plain">{html.escape(block)}</p>'
    except Exception:  # a renderer's own bug must not stop a reply from ending: the text as it is
        log.warning('could not render a block of %d characters as Markdown; shown as text', len(block), exc_info=True)
        return f'<p class="message-plain">{html.escape(block)}</p>'


def one_line_end(text: str) -> str:
    return text.replace('\r\n', '\n').replace('\r', '\n')


def markdown_with_code(block: str, code: tuple[tuple[int, int], ...]) -> str:
    """A block through markdown2, but each fenced code block inside it (a list item's) drawn as a code block of its
    own is: markdown2 would make struck-out text of a ~~~ fence, and inline code of one on the item's first line.
    Each goes in as a placeholder, which markdown2 leaves alone, and comes back as its code box."""
    boxes: list[str] = []
    parts, at = [], 0
    for fence_start, code_end in code if CODE_PLACE not in block else ():
        line_start = block.rfind('\n', 0, fence_start) + 1
        column = fence_start - line_start  # where the item's text starts: its code lines are indented as far
        first, *lines = one_line_end(block[fence_start:code_end]).split('\n')
        boxes.append(render_code('\n'.join([first, *(line[min(column, indent_of(line)):] for line in lines)])))
        parts += [block[at:fence_start], f'{CODE_PLACE}{len(boxes) - 1}{CODE_PLACE}']
        at = code_end
    source = with_definitions_shown(one_line_end(''.join([*parts, block[at:]])))
    html_out = markdown2.markdown(source, safe_mode='escape', extras=EXTRAS)
    return re.sub(rf'(?:<p>)?{CODE_PLACE}(\d+){CODE_PLACE}(?:</p>)?', lambda place: boxes[int(place[1])], html_out)


def with_definitions_shown(block: str) -> str:
    """A block is rendered alone, so a reference link's definition ("[1]: https://...") can only serve links in its
    own block; elsewhere the link stays as written. A definition that no link in its block uses is shown as a line
    of text, its address a link, rather than vanish (markdown2 would drop it): the reader still finds the address."""
    definitions = list(DEFINITION.finditer(block))
    rest = DEFINITION.sub('', block)
    shown = [definition for definition in definitions
             if not re.search(rf'\[{re.escape(definition["label"])}\]', rest, re.IGNORECASE)]
    starts = {definition.start() for definition in shown}
    for definition in reversed(shown):
        address = definition['address'].strip('<>')
        address = f'<{address}>' if re.match(r'https?://', address, re.IGNORECASE) else address
        line_break = '  ' if definition.end() + 1 in starts else ''  # shown definitions one a line, as written
        line = f'{definition["indent"]}\\[{definition["label"]}\\]: {address}{definition["title"]}{line_break}'
        block = block[:definition.start()] + line + block[definition.end():]
    return block


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(' '))


def render_code(block: str) -> str:
    """A fenced code block: highlighted when its language is known, with the language named above it."""
    opener, _, body = block.partition('\n')
    indent = indent_of(opener)
    fence = FENCE.match(opener).group(1)  # type: ignore[union-attr]
    language = opener.strip()[len(fence):].strip().split(' ')[0]
    lines = body.split('\n') if body else []
    if lines and closes(lines[-1], fence):
        lines.pop()
    return code_box('\n'.join(line[min(indent, indent_of(line)):] for line in lines), language)


def code_box(code: str, language: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    label = f'<span class="code-language">{html.escape(language)}</span>' if language else ''
    highlighted = PLAIN_TOKEN.sub(r'\1', highlight(code, lexer, CODE_FORMATTER))
    return sanitized(f'<div class="code-block">{label}{highlighted}</div>')


EXTRAS = ['fenced-code-blocks', 'tables', 'strike', 'cuddled-lists']
CODE_FORMATTER = HtmlFormatter(cssclass='codehilite', wrapcode=True)
LIGHT, DARK = 'default', 'github-dark'  # the code's colours on a light and on a dark page


def plain_token_classes() -> set[str]:
    """The token classes that both styles draw as plain text (names, punctuation), and whitespace. A code block
    leaves their spans out: over half its elements, and the browser's work grows with the elements (a 300-line
    block took 150-240 ms to add with them)."""
    light, dark = get_style_by_name(LIGHT), get_style_by_name(DARK)

    def plain(style: type[Style], token: _TokenType) -> bool:
        drawn = style.style_for_token(token)
        return drawn['color'] in (None, style.style_for_token(Text)['color']) and not any(
            drawn[key] for key in ('bold', 'italic', 'underline', 'bgcolor', 'border'))
    return {css_class for token, css_class in STANDARD_TYPES.items()
            if css_class and (token in Whitespace or (plain(light, token) and plain(dark, token)))}


PLAIN_TOKEN = re.compile(rf'<span class="(?:{"|".join(sorted(plain_token_classes()))})">([^<]*)</span>')
CODE_PLACE = 'qzcodeplaceqz'  # where a code block inside an item goes back in: letters only, which markdown2 keeps
EMPTY_PARAGRAPH = re.compile(r'<p>\s*</p>\n?')
# A reference link's definition, as markdown2 reads it: "[label]: address" and maybe a title, on one line.
DEFINITION = re.compile(r'^(?P<indent> {0,3})\[(?P<label>[^\]\n]+)\]:[ \t]*(?P<address>\S+)(?P<title>[^\n]*)$',
                        re.MULTILINE)
IMAGE = re.compile(r'<img src="([^"]*)" alt="([^"]*)"(?: title="[^"]*")? ?/?>')
LINK = re.compile(r'<a href="([^"]*)"([^>]*)>(.*?)</a>', re.DOTALL)
# What Markdown makes, and nothing else: the tags, table alignment, links, and our own classes and Pygments' (a
# message cannot borrow the page's classes to dress up as something else).
ALLOWED_TAGS = {'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'code', 'pre', 'blockquote', 'ul',
                'ol', 'li', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'a', 's', 'div', 'span'}
ALLOWED_ATTRIBUTES = {'a': {'href', 'title'}, 'ol': {'start'}, 'th': {'style'}, 'td': {'style'}}
ALLOWED_CLASSES = {'div': {'codehilite', 'code-block'}, 'p': {'message-plain'},
                   'span': {*filter(None, STANDARD_TYPES.values()), 'code-language', 'link-host'}}


def sanitized(rendered: str) -> str:
    return nh3.clean(rendered, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, allowed_classes=ALLOWED_CLASSES,
                     filter_style_properties={'text-align'}, url_schemes={'http', 'https', 'mailto'},
                     link_rel='nofollow noopener noreferrer', set_tag_attribute_values={'a': {'target': '_blank'}})


def image_as_link(match: re.Match[str]) -> str:
    source, alt = match.group(1), match.group(2)  # both already HTML-escaped by markdown2
    return f'<a href="{source}">🖼 {alt or source}</a>'


def show_link_host(match: re.Match[str]) -> str:
    """A link whose text is not its address shows the address's host, so a reader sees where it goes."""
    address, attributes, text = match.groups()
    try:
        host = urlsplit(html.unescape(address)).hostname
    except ValueError:  # not an address a browser could open ("http://[oops]/"): no host to show
        return match.group(0)
    shown = html.unescape(re.sub(r'<[^>]+>', '', text))
    # The host as a whole name in the text: "apple.com" does not vouch for le.com, nor "x.com.evil.net" for x.com.
    if not host or re.search(rf'(?<![\w.-]){re.escape(host)}(?![\w-]|\.\w)', shown, re.IGNORECASE):
        return match.group(0)
    return f'<a href="{address}"{attributes}>{text} <span class="link-host">({html.escape(host)})</span></a>'


def code_highlight_css() -> str:
    """Pygments' colours for the code blocks (light and dark page)."""
    return (HtmlFormatter(nobackground=True, style=LIGHT).get_style_defs('.codehilite') +
            HtmlFormatter(nobackground=True, style=DARK).get_style_defs('.body--dark .codehilite'))
