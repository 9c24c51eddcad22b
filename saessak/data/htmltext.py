"""Prose from documentation HTML: page chrome skipped, one paragraph per block element.

Skipped: <head>, <script>, <style>, <header>, <nav>, <aside>, <footer>, DocBook navigation and
tables of contents (div.navheader / div.navfooter / div.toc), and elements marked `hidden`
except LibreOffice's "default" alternative of a platform switch (its Mac variant is dropped, the
default one kept, as the help viewer would show it on Linux).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP_TAGS = frozenset({"head", "script", "style", "header", "nav", "aside", "footer", "noscript", "template"})
_SKIP_CLASSES = frozenset({"navheader", "navfooter", "toc", "list-of-tables", "list-of-figures", "debug"})
_BLOCK_TAGS = frozenset({
    "p", "div", "br", "li", "dt", "dd", "tr", "td", "th", "table", "pre", "blockquote", "section",
    "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "hr", "title", "caption",
})
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                        "track", "wbr", "param"})
_SPACES = re.compile(r"\s+")


class _ProseParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] = []
        self._skip_tag: str | None = None  # the tag whose subtree is being skipped
        self._skip_depth = 0  # nesting of that same tag inside the skipped subtree

    def _should_skip(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _SKIP_TAGS:
            return True
        a = dict(attrs)
        if "hidden" in a and not (a.get("id") or "").startswith("default"):
            return True
        classes = (a.get("class") or "").split()
        return any(c in _SKIP_CLASSES for c in classes)

    def _flush(self) -> None:
        if self._buf:
            text = _SPACES.sub(" ", "".join(self._buf)).strip()
            if text:
                self.paragraphs.append(text)
            self._buf = []

    def handle_starttag(self, tag, attrs):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if tag not in _VOID_TAGS and self._should_skip(tag, attrs):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_startendtag(self, tag, attrs):
        if self._skip_tag is None and tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data):
        if self._skip_tag is None:
            self._buf.append(data)

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(html: str) -> list[str]:
    """The visible prose paragraphs of an HTML page, whitespace collapsed, in document order."""
    parser = _ProseParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs
