"""Markdown to safe HTML: markdown-it-py parses, nh3 sanitizes, @mentions become highlighted names.

Posts are rendered once when written (``Post.body_html``), so pages never pay for parsing. Raw HTML
in posts is allowed through the parser and then cut down by nh3 to a short list of harmless tags and
attributes: no scripts, no event handlers, no ``javascript:`` links, images only from the site itself
(or hosts the administrator lists).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

MENTION_RE = re.compile(r"(?<![\w@/.])@([A-Za-z0-9][A-Za-z0-9_.-]{1,39})(?<![.-])")
LINK_RE = re.compile(r"(?i)(https?://|www\.)")
CLASS_RE = re.compile(r"^(language-[A-Za-z0-9_+#-]{1,30}|math|inline|block|mention)$")

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
}


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # Pandoc's delimiter rules, so prices stay text: an opening ``$`` is followed by a non-space,
    # a closing ``$`` is preceded by a non-space and not followed by a digit ("$5 and $10").
    # ``$$...$$`` inside a paragraph is display math, parsed before single dollars.
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.add_render_rule("math_inline_double", _render_display_in_paragraph)
    return md


def _render_display_in_paragraph(
    self: object, tokens: Sequence[Token], idx: int, options: object, env: object
) -> str:
    # The plugin writes a <div> here, which cannot sit inside <p>; a span keeps the paragraph whole
    # and "block" tells forum-math.js to typeset it in display mode.
    return f'<span class="math block">{_escape(tokens[idx].content.strip())}</span>'


_MD = _parser()


@dataclass(frozen=True)
class RenderedPost:
    html: str
    mentions: frozenset[int]  # user ids mentioned by name


def quote_depth(source: str) -> int:
    """How deeply block quotes nest in the Markdown source."""
    depth = deepest = 0
    for token in _MD.parse(source):
        if token.type == "blockquote_open":
            depth += 1
            deepest = max(deepest, depth)
        elif token.type == "blockquote_close":
            depth -= 1
    return deepest


def count_links(source: str) -> int:
    """Links a post carries (URLs anywhere in the text, Markdown or HTML)."""
    return len(LINK_RE.findall(source))


def _text_children(tokens: list[Token]) -> list[Token]:
    """Plain text tokens outside links and code, where a mention may appear."""
    found = []
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        in_link = 0
        for child in token.children:
            if child.type == "link_open":
                in_link += 1
            elif child.type == "link_close":
                in_link -= 1
            elif child.type == "text" and not in_link:
                found.append(child)
    return found


def mentioned_names(source: str) -> set[str]:
    """Lower-cased names written as @name in the post (outside code and links)."""
    names: set[str] = set()
    for child in _text_children(_MD.parse(source)):
        names.update(m.group(1).lower() for m in MENTION_RE.finditer(child.content))
    return names


def _image_filter(image_hosts: frozenset[str]) -> Callable[[str, str, str], str | None]:
    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "class":
            kept = [c for c in value.split() if CLASS_RE.match(c)]
            return " ".join(kept) or None
        if tag == "img" and attribute == "src":
            parts = urlsplit(value)
            if not parts.scheme and not parts.netloc and value.startswith("/"):
                return value  # same site
            if parts.scheme == "https" and parts.hostname in image_hosts:
                return value
            return None
        return value

    return keep


def sanitize(html: str, image_hosts: frozenset[str] = frozenset()) -> str:
    """Keep only harmless markup; run on every piece of HTML that came from a user."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_image_filter(image_hosts),
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer ugc",
        strip_comments=True,
    )


def render_markdown(
    source: str,
    *,
    known_users: Mapping[str, int] | None = None,
    image_hosts: frozenset[str] = frozenset(),
) -> RenderedPost:
    """Render a post. ``known_users`` maps lower-cased names to ids, for @mentions that exist."""
    known = known_users or {}
    tokens = _MD.parse(source)
    mentioned: set[int] = set()
    for child in _text_children(tokens):
        if "@" in child.content:
            child.type = "html_inline"  # we write escaped HTML ourselves below
            child.content = _mark_mentions(child.content, known, mentioned)
    html = _MD.renderer.render(tokens, _MD.options, {})
    return RenderedPost(sanitize(html, image_hosts), frozenset(mentioned))


def _mark_mentions(text: str, known: Mapping[str, int], mentioned: set[int]) -> str:
    out = []
    last = 0
    for match in MENTION_RE.finditer(text):
        user_id = known.get(match.group(1).lower())
        if user_id is None:
            continue
        out.append(_escape(text[last : match.start()]))
        out.append(
            f'<a href="/forum/u/{user_id}"><span class="mention">@{_escape(match.group(1))}</span></a>'
        )
        mentioned.add(user_id)
        last = match.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


_TEXT_TOKENS = {"text", "code_inline", "math_inline", "math_inline_double"}
_BLOCK_TEXT_TOKENS = {"code_block", "fence", "math_block"}


def plain_text(source: str) -> str:
    """The words of some Markdown without its syntax (for search snippets): no ``**``, ``>``,
    backticks, link targets or HTML tags; blocks and line breaks become single spaces."""
    words: list[str] = []
    for token in _MD.parse(source):
        if token.type in _BLOCK_TEXT_TOKENS:
            words.append(token.content)
        elif token.type == "inline":
            for child in token.children or []:
                if child.type in _TEXT_TOKENS:
                    words.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    words.append(" ")
            words.append(" ")
    return " ".join("".join(words).split())


def quote_for_reply(author: str, source: str) -> str:
    """The Markdown a reply starts with when it quotes a post."""
    lines = source.strip().splitlines() or [""]
    return f"> **@{author}** wrote:\n>\n" + "\n".join(f"> {line}" for line in lines) + "\n\n"
