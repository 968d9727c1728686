"""The url_fetch tool: GET one http(s) URL and answer its text.

The URL is the model's choice, so the request goes only where
``shared.outbound`` allows (never to loopback, private, link-local or metadata
addresses, redirects included, unless an operator allows them). The body read
is capped; HTML is reduced to its text, and non-text content is refused
without reading it.
"""

from __future__ import annotations

import codecs
from html.parser import HTMLParser

import httpx2
from pydantic import Field

from shared.outbound import OutboundRefused, guarded_get
from shared.tools.base import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolInput,
    ToolResult,
    cap_text,
    completed,
    failed,
)

MAX_FETCH_BYTES = 2_000_000
FETCH_TIMEOUT_S = 30.0
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section",
     "article", "header", "footer", "table", "ul", "ol", "blockquote", "title"}
)  # fmt: skip


class UrlFetchInput(ToolInput):
    url: str = Field(min_length=1, description="An http:// or https:// URL.")


class UrlFetch(Tool):
    name = "url_fetch"
    description = (
        "Fetch a web page or text document with an HTTP GET and answer its text "
        "(HTML reduced to text). Only http and https to public addresses; binary "
        "content is refused."
    )
    Input = UrlFetchInput

    async def run(self, args: UrlFetchInput, ctx: ToolContext) -> ToolResult:
        url = _checked_url(args.url)
        try:
            async with guarded_get(ctx.outbound, url, timeout_s=FETCH_TIMEOUT_S) as response:
                content_type = response.headers.get("content-type", "")
                if not _is_text_type(content_type):
                    raise ToolFailure(f"{url} is not text (content-type {content_type!r})")
                body, cut = await _read_capped(response)
                text = _decode(body, response.charset_encoding, content_type)
        except OutboundRefused as exc:
            raise ToolFailure(f"{url} was not fetched: {exc}") from exc
        except httpx2.HTTPError as exc:
            raise ToolFailure(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc
        if cut:
            text += f"\n[body cut after {MAX_FETCH_BYTES} bytes]"
        text = cap_text(text, ctx.output_cap_bytes)
        if response.is_success:
            return completed(text)
        return failed(f"HTTP {response.status_code} {response.reason_phrase}\n{text}")


def _checked_url(raw: str) -> httpx2.URL:
    try:
        url = httpx2.URL(raw)
    except httpx2.InvalidURL as exc:
        raise ToolFailure(f"invalid URL {raw!r}: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise ToolFailure(f"only http and https URLs can be fetched, not {url.scheme or raw!r}")
    if not url.host:
        raise ToolFailure(f"URL {raw!r} has no host")
    return url


def _is_text_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return (
        not media
        or media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith(("+json", "+xml"))
    )


async def _read_capped(response: httpx2.Response) -> tuple[bytes, bool]:
    """The body up to ``MAX_FETCH_BYTES`` (decompressed), and whether it was cut."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_FETCH_BYTES:
            return bytes(body[:MAX_FETCH_BYTES]), True
    return bytes(body), False


def _decode(body: bytes, charset: str | None, content_type: str) -> str:
    if b"\x00" in body[:8192]:
        raise ToolFailure("the response looks binary")
    try:
        encoding = codecs.lookup(charset or "utf-8").name
    except LookupError:
        encoding = "utf-8"
    text = body.decode(encoding, errors="replace")
    if "html" in content_type.lower():
        return html_to_text(text)
    return text


def html_to_text(html: str) -> str:
    """The visible text of an HTML document, a line per block, scripts and styles left out."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(self._skipping - 1, 0)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
