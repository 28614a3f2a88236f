"""Where a reply's Markdown blocks end, read as the text arrives: a paragraph, a heading, a list item, a quote, a
table, a fenced or indented code block. markdown.py renders each block once it is finished.

Only complete lines are read (a line ends at "\n"; a "\r" before it is ignored), so where the text was cut into
pieces never changes the blocks. A list is cut into its items, so a long list is formatted item by item. The rules
follow CommonMark where a model's Markdown needs them; skim this on a first read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = re.compile(r'^ {0,3}(`{3,}(?=[^`]*$)|~{3,})')  # an opening fence: ``` (no ` after it on the line) or ~~~
FENCE_INSIDE = re.compile(r'^\s*(`{3,}(?=[^`]*$)|~{3,})')  # a fence in a list item, at any indent
HEADING = re.compile(r'^ {0,3}#{1,6}(?:[ \t]|$)')
RULE = re.compile(r'^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$')
SETEXT_UNDERLINE = re.compile(r'^ {0,3}(?:=+|-+)[ \t]*$')
LIST_ITEM = re.compile(r'^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)|$)')
QUOTE = re.compile(r'^ {0,3}>')
INDENTED_CODE = re.compile(r'^(?: {4}|\t)')  # a line of an indented code block (it cannot interrupt a paragraph)


@dataclass
class Block:
    start: int
    end: int
    kind: str  # 'fence', 'code' (indented), 'item' (of a list), 'quote', 'heading', 'rule' or 'paragraph' (or a table)
    # An item's fenced code blocks: for each, where its opening fence starts and where its last line ends.
    code: list[tuple[int, int]] = field(default_factory=list)


class BlockSplitter:
    """Cuts Markdown into blocks as it arrives, a complete line at a time; where a line ends a block, says so."""

    def __init__(self) -> None:
        self.read_to = 0  # the text before this offset has been read; it is always the start of a line
        self.no_newline_before = 0  # the text from `read_to` to here holds no line end: no need to look again
        self.block: Block | None = None  # the block being written
        self.fence = ''  # its opening fence (a fenced block, or a fence inside a list item)
        self.item_indent = 0  # a list item: where its text starts; lines indented this far belong to it
        self.after_blank = False  # the block's last line was blank: the next line decides whether it goes on

    @property
    def unfinished_from(self) -> int:
        """Where the text not yet in a finished block begins."""
        return self.block.start if self.block else self.read_to

    def split(self, text: str, *, final: bool = False) -> list[Block]:
        """Read the complete lines after `read_to`; return the blocks they finished. `final`: the text is all
        there is, so its last line is complete and the block being written is finished too."""
        finished = []
        while (newline := text.find('\n', max(self.read_to, self.no_newline_before))) != -1 or (
                final and self.read_to < len(text)):
            end = newline + 1 if newline != -1 else len(text)
            finished += self._read(text[self.read_to:end].rstrip('\r\n'), self.read_to)
            self.read_to = end
        self.no_newline_before = len(text)  # a line being written: the next look starts where this one ended
        if final and self.block:
            finished.append(self._close())
        return finished

    def _read(self, line: str, start: int) -> list[Block]:
        finished = []
        blank = not line.strip()
        if self.block and not self._goes_on(line, blank):
            finished.append(self._close())
        if self.block is None:
            if blank:
                return finished  # between blocks
            self._open(line, start)
        elif self.block.kind == 'item' and not blank:
            self._code_in_item(line, start)
        if not blank:
            self.block.end = start + len(line)  # type: ignore[union-attr]  # trailing blank lines belong to no block
        self.after_blank = blank
        if self._complete_with(line, start):
            finished.append(self._close())
        return finished

    def _open(self, line: str, start: int) -> None:
        kind = 'paragraph'
        if fence := FENCE.match(line):
            kind, self.fence = 'fence', fence.group(1)
        elif HEADING.match(line):
            kind = 'heading'
        elif RULE.match(line):
            kind = 'rule'
        elif INDENTED_CODE.match(line):
            kind = 'code'
        elif item := LIST_ITEM.match(line):
            kind = 'item'
            self.item_indent = len(item.group(1)) + len(item.group(2)) + len(item.group(3) or ' ')
        elif QUOTE.match(line):
            kind = 'quote'
        self.block = Block(start, start, kind)
        if kind == 'item':
            self._code_in_item(line, start, skip=self.item_indent)  # "- ```python": its text begins with code

    def _goes_on(self, line: str, blank: bool) -> bool:
        """Whether `line` still belongs to the block being written."""
        kind = self.block.kind  # type: ignore[union-attr]
        if kind == 'fence':
            return True  # until its closing fence
        if kind == 'paragraph':
            return not blank and (bool(SETEXT_UNDERLINE.match(line)) or not interrupts(line))
        if kind == 'code':
            return blank or bool(INDENTED_CODE.match(line))  # blank lines inside it are code
        indented = len(line) - len(line.lstrip(' ')) >= self.item_indent
        if kind == 'item':
            if blank:
                return True  # the next line decides
            if self.fence or self.after_blank:
                # Code in the item (even if its fence never closes), or a later paragraph of it: as far in as its
                # text, or the item has ended.
                return indented
            return indented or not interrupts(line)  # a lazy continuation line
        return not blank and (bool(QUOTE.match(line)) or not interrupts(line))  # a quote

    def _code_in_item(self, line: str, start: int, skip: int = 0) -> None:
        """Follows the fenced code blocks in a list item (its line, from `skip` on): an open one keeps the item going
        through blank lines and lines that would start a block, and markdown.py draws each as a code block."""
        code = self.block.code  # type: ignore[union-attr]
        if self.fence:
            code[-1] = (code[-1][0], start + len(line))
            if closes(line.strip(), self.fence):
                self.fence = ''
        elif fence := FENCE_INSIDE.match(line[skip:]):
            self.fence = fence.group(1)
            code.append((start + skip + fence.start(1), start + len(line)))

    def _complete_with(self, line: str, start: int) -> bool:
        """A block that this line finishes on its own: a heading, a rule, a closed fence, a setext heading."""
        block = self.block
        assert block is not None
        if block.kind in ('heading', 'rule'):
            return True
        if block.kind == 'fence':
            return start > block.start and closes(line, self.fence)
        return block.kind == 'paragraph' and start > block.start and bool(SETEXT_UNDERLINE.match(line))

    def _close(self) -> Block:
        block, self.block, self.fence, self.after_blank = self.block, None, '', False
        assert block is not None
        return block


def interrupts(line: str) -> bool:
    """A line that starts a block of its own even straight after a paragraph's line."""
    return bool(FENCE.match(line) or HEADING.match(line) or RULE.match(line) or LIST_ITEM.match(line)
                or QUOTE.match(line))


def closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(line) - len(line.lstrip(' ')) <= 3 and stripped.startswith(fence) and set(stripped) == {fence[0]}
