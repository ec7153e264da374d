"""A gate in front of Gradio's event routes: every request that runs a handler is checked before Gradio sees it.

A browser sends a handler's inputs as JSON (``POST /gradio_api/queue/join``, ``/run/…``, ``/call/…``). A client
that is no browser can put anything there: a file reference to any server path or URL (Gradio would read the file,
or fetch the URL, into its cache before the handler runs), or a value outside a fixed list of choices (Gradio
refuses it, but with the raw value in the message and a traceback in the log). This gate answers such requests
with a 422 ``{"error": …}`` and one log line: file references must name a file inside Gradio's upload folder, and
values of fixed-choice inputs must be among their choices. It covers every handler of the Blocks, present and
future, since it reads the inputs from the Blocks' own config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textclf.safety import read_body, replayed, send_json, uploaded_file

logger = logging.getLogger(__name__)
EVENT_ROUTE = re.compile(r"/gradio_api/(queue/join|run/[^/]+|api/[^/]+|call/(v2/)?[^/]+)/?$")
CHOICE_TYPES = ("dropdown", "radio", "checkboxgroup")
UPLOAD_ROUTE = re.compile(r"/gradio_api/upload/?$")
SELECT_EVENTS = {"select"}  # events whose handlers take Gradio's SelectData, built from the request's event_data
MAX_DEPTH = 32  # nesting of a request's inputs: a handler's inputs nest a few levels (a file reference: 3)


class GradioGuard:
    """ASGI middleware over the app that serves ``demo`` (see the module). With ``uploads_cap_mb``, an upload is
    refused (507) while the upload folder already holds that much: visitors' files cannot fill the disk."""

    def __init__(self, app: Any, demo: Any, uploads: str, uploads_cap_mb: float | None = None) -> None:
        self.app, self.demo, self.uploads = app, demo, Path(uploads).resolve()
        self.uploads_cap_mb = uploads_cap_mb

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if self.uploads_cap_mb is not None and UPLOAD_ROUTE.search(scope.get("path", "")):
            held = _folder_mb(self.uploads)
            if held >= self.uploads_cap_mb:
                logger.warning("textclf: refused (upload): the upload folder holds %.0f MB", held)
                await send_json(send, 507, {"error": f"this app holds {held:,.0f} MB of uploads, its limit is "
                                                     f"{self.uploads_cap_mb:,.0f} MB: try again later"})
                return
        if not EVENT_ROUTE.search(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive)  # already capped by BodyLimit, which wraps this
        problem = self.problem(scope["path"], body)
        if problem:
            logger.warning("textclf: refused (%s): %s", scope["path"], problem)
            await send_json(send, 422, {"error": problem})
            return
        await self.app(scope, replayed(messages, receive), send)

    def problem(self, path: str, body: bytes) -> str | None:
        """Why this request must not reach Gradio, or None. A body that is not JSON is Gradio's to refuse."""
        try:
            payload = json.loads(body)
            refs = list(_file_refs(payload.get("data") if isinstance(payload, dict) else None))
        except RecursionError:
            return f"the request is nested more than {MAX_DEPTH} levels deep; send the handler's inputs as they are"
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return None
        if any(uploaded_file(ref, self.uploads) is None for ref in refs):
            return ("a file in this request was not uploaded to this server: upload the file first, then send "
                    "the reference the upload returned")
        handler = self._inputs(path, payload)
        if handler is None:
            return "this app has no such handler: take the handlers from its /config"
        inputs, updated, events = handler
        if events & SELECT_EVENTS and not (isinstance(payload.get("event_data"), dict)
                                           and "index" in payload["event_data"]):
            # Gradio builds the handler's SelectData from it before the handler runs, and fails without it.
            return "this handler answers a selection: send the event data (its index) with the request"
        for i, (component, value) in enumerate(zip(inputs, payload["data"], strict=False)):
            # A handler can give a component it updates new choices for one visitor, which the config does not
            # hold: where the config holds none (filled per study), they are the handler's to check. Where it holds
            # some, they are the widest: handlers here only narrow them (the backbone boxes, to what loads), as
            # they only narrow a slider's range (the Attention section's layers and heads), so the config holds.
            choices = component.get("props", {}).get("choices")
            wrong = (_wrong_type(component, value) or _outside_range(component, value)
                     or (None if component.get("id") in updated and not choices
                         else _outside_choices(component, value)))
            if wrong:
                label = component.get("props", {}).get("label") or component.get("type")
                return f"input {i + 1} ({str(label)[:60]}) {wrong}"
        return None

    def _inputs(self, path: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], set[int], set[str]] | None:
        """The input components of the handler this request runs (by fn_index, or by the api_name in its path), the
        ids of every component some handler updates, and the events that trigger it; None when the Blocks have no
        such handler."""
        config = self.demo.config or {}
        components = {c["id"]: c for c in config.get("components", [])}
        deps = config.get("dependencies", [])
        updated = {i for dep in deps for i in dep.get("outputs", [])}
        api_name = path.rstrip("/").rsplit("/", 1)[-1] if "queue/join" not in path else None
        fn_index = payload.get("fn_index")
        for dep in deps:
            if (api_name is not None and dep.get("api_name") == api_name) or (api_name is None and dep.get("id") == fn_index):
                events = {t[1] for t in dep.get("targets", []) if isinstance(t, (list, tuple)) and len(t) == 2}
                return [components.get(i, {}) for i in dep.get("inputs", [])], updated, events
        return None


def _folder_mb(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # a file deleted meanwhile (Gradio's cache cleaning)
            total += path.lstat().st_size
    return total / 1e6


def _file_refs(value: Any, depth: int = 0) -> Iterator[str]:
    """Every path a value names as a file: Gradio treats a dict with a string "path" as a file reference."""
    if depth > MAX_DEPTH:
        raise RecursionError
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for v in value.values():
            yield from _file_refs(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from _file_refs(v, depth + 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)


# What each input component's preprocessing takes without failing (Gradio's own code raises, with a traceback in
# the log, on e.g. a slider given null). Components not named here are left to Gradio.
EXPECTED: dict[str, tuple[str, Any]] = {
    "slider": ("a number", _is_number),
    "number": ("a number", lambda v: v is None or _is_number(v)),
    "textbox": ("a string", lambda v: v is None or isinstance(v, str)),
    "checkboxgroup": ("a list of choices", lambda v: isinstance(v, list) and all(_is_scalar(x) for x in v)),
    "file": ("a file reference", lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("path"), str))),
}


def _wrong_type(component: dict[str, Any], value: Any) -> str | None:
    kind = component.get("type")
    if kind == "dropdown":
        many = component.get("props", {}).get("multiselect")
        ok = (isinstance(value, list) and all(_is_scalar(x) for x in value)) if many else value is None or _is_scalar(value)
        return None if ok or (many and value is None) else f"must be {'a list of choices' if many else 'a choice'}"
    if kind in EXPECTED:
        what, ok = EXPECTED[kind]
        return None if ok(value) else f"must be {what}"
    return None


def _outside_range(component: dict[str, Any], value: Any) -> str | None:
    """What is wrong with a slider's value, or None (Gradio refuses one outside its bounds, with a traceback)."""
    props = component.get("props", {})
    if component.get("type") != "slider" or not _is_number(value):
        return None
    low, high = props.get("minimum"), props.get("maximum")
    if (_is_number(low) and value < low) or (_is_number(high) and value > high):
        return f"must be between {low} and {high}"
    return None


def _outside_choices(component: dict[str, Any], value: Any) -> str | None:
    """What is wrong with ``value`` for a fixed-choice component, or None (also for free-text ones)."""
    props = component.get("props", {})
    if component.get("type") not in CHOICE_TYPES or props.get("allow_custom_value") or value is None:
        return None
    allowed = [c[1] if isinstance(c, (list, tuple)) else c for c in props.get("choices") or []]
    many = component["type"] == "checkboxgroup" or props.get("multiselect")
    values = value if many and isinstance(value, list) else [value]
    if many and not isinstance(value, list):
        return "must be a list of choices"
    if any(v not in allowed for v in values):
        shown = ", ".join(str(a) for a in allowed[:12])
        return f"must be among its choices: {shown}"
    return None
