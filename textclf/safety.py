"""What a stranger's input may do when textclf is served: the text limit, escaping for the places user-derived strings
are shown (Markdown, HTML, Plotly, CSV cells), uploads that must come from Gradio's upload folder, and error lines
without server paths.

Every string that came from a visitor or from data (texts, label and column names, file and study names, log lines)
goes through one of these before it reaches a page: Gradio renders Markdown and toasts as HTML, and Plotly renders
a subset of HTML (links included) in axis labels and titles.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textclf.errors import DataError

MAX_TEXT_CHARS = 10_000  # one text to classify, in characters (REST, the Gradio API, the live box, batch-file rows)
MAX_REQUEST_BYTES = 1 << 20  # one JSON request body: a text at the limit is at most ~40 kB even as \u escapes
SHOWN_CHARS = 200  # a user-derived name shown in a message is cut to this many characters

_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character: CommonMark escapes them all


def md(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as literal text inside Markdown: every character Markdown or HTML could act on is backslash-escaped
    (links, images, autolinked URLs, emphasis, headings and tags all stay text), and line breaks become spaces."""
    text = _shorten(" ".join(str(value).split()), limit)
    return _MD_SPECIAL.sub(r"\\\1", text)


def plot_text(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as literal text in a Plotly figure (titles, axis ticks, legends, hover): Plotly reads a subset of
    HTML there, ``<a href>`` included, and turns entities back into the characters."""
    return html.escape(_shorten(str(value), limit), quote=False)


def toast(message: str) -> str:
    """An error line for Gradio's toast, which renders its message as HTML."""
    return html.escape(message, quote=False)


def csv_cell(value: str) -> str:
    """A cell that a spreadsheet will not run as a formula (OWASP's CSV-injection rule: a leading = + - @, tab or
    carriage return gets a quote in front)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------- server paths
def scrub_paths(message: str, roots: Iterable[str | Path]) -> str:
    """``message`` with every path under one of ``roots`` (the studies folder, Gradio's upload folder, the working
    directory, the temporary directory, home) replaced by its last part: a visitor learns which file, not where."""
    found = sorted({str(Path(r)) for r in roots if r and str(r) not in ("/", ".")}, key=len, reverse=True)
    for root in found:
        pattern = re.compile(re.escape(root) + r"(?P<rest>/[^\s'\"(),;:]*)?(?![^\s'\"(),;:/])")
        message = pattern.sub(_last_part, message)
    return message


def _last_part(match: re.Match[str]) -> str:
    rest = (match.group("rest") or "").strip("/")
    return rest.rsplit("/", 1)[-1] if rest else "(server folder)"


def server_roots(*extra: str | Path | None) -> list[str]:
    """Folders whose paths an error shown to a visitor must not spell out."""
    roots = [upload_dir(), tempfile.gettempdir(), os.getcwd(), str(Path.home()), *[e for e in extra if e]]
    return [str(r) for r in roots] + [str(Path(r).resolve()) for r in roots]


# ---------------------------------------------------------------------------------------------------- uploads
def upload_dir() -> str:
    """Gradio's upload folder, computed as Gradio does (``gradio.utils.get_upload_folder``) without importing it."""
    return os.environ.get("GRADIO_TEMP_DIR") or str((Path(tempfile.gettempdir()) / "gradio").resolve())


def uploaded_file(path: str, root: str | Path | None = None) -> Path | None:
    """``path`` resolved (symlinks too) if it is a file inside the upload folder, else None."""
    try:
        folder, resolved = Path(root or upload_dir()).resolve(), Path(path).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        return None
    inside = resolved.is_relative_to(folder) and resolved != folder and resolved.is_file()
    return resolved if inside else None


def check_uploaded(path: str, root: str | Path | None = None) -> Path:
    """``path`` if it is a file inside the upload folder, else a DataError. A handler gets a file path from the
    client; only files this server received as uploads may be opened."""
    resolved = uploaded_file(path, root)
    if resolved is None:
        raise DataError("that file was not uploaded to this server: expected a file uploaded to this app; "
                        "upload it again")
    return resolved


def check_text_length(text: str, what: str = "the text") -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise DataError(f"{what} has {len(text):,} characters, the limit is {MAX_TEXT_CHARS:,}: "
                        "send a shorter text (models read only the first few hundred words anyway)")


# ---------------------------------------------------------------------------------------------------- request bodies
class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413 with ``{"error": …}`` before the app reads
    it (a declared Content-Length is refused at once; a chunked body once it passes the limit). Paths starting
    with an ``exempt`` prefix (Gradio's upload route, which has its own file-size limit) pass untouched."""

    def __init__(self, app: Any, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        if declared is not None:  # declared and within the limit: the server stops reading at that length
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive, self.limit)  # no length declared: read it here, up to the limit
        if len(body) > self.limit:
            await self._refuse(send, len(body))
            return
        await self.app(scope, replayed(messages, receive), send)

    async def _refuse(self, send: Any, size: int) -> None:
        await send_json(send, 413, {"error": f"the request body is {size:,} bytes or more, the limit is "
                                             f"{self.limit:,}: send texts of at most {MAX_TEXT_CHARS:,} characters"})


async def read_body(receive: Any, limit: int | None = None) -> tuple[list[dict[str, Any]], bytes]:
    """Read a request's body messages in ASGI middleware (stopping once past ``limit`` bytes): the messages, to hand
    on with :func:`replayed`, and the bytes."""
    messages, body = [], b""
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if (limit is not None and len(body) > limit) or message["type"] != "http.request" or not message.get("more_body"):
            return messages, body


def replayed(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A ``receive`` for the app behind the middleware: the messages already read, then the rest."""
    async def replay() -> dict[str, Any]:
        return messages.pop(0) if messages else await receive()

    return replay


async def send_json(send: Any, status: int, content: dict[str, Any]) -> None:
    """A whole JSON response, sent from ASGI middleware."""
    import json

    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
