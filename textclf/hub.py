"""The Hugging Face Hub, bounded in time: a hub that is down or frozen ends a request with one line, never a hang.

Two guards, because the hub libraries' own settings do not bound a request: their shared HTTP client has no timeout
of its own, and they retry a failed request five times with back-off (23 s against a refused port, 98 s for one
``from_pretrained``, and with no end against a server that accepts and never answers).

* :func:`probe` asks the hub one question, once, within ``PROBE_S`` seconds, before a study or a data load depends on
  it: a hub that does not answer is reported then, and a backbone already in the cache is loaded from there.
* :func:`bound_requests` gives every request the hub libraries make a connect and read timeout of ``REQUEST_S``
  seconds (the libraries' public ``set_client_factory``), so no download can hang, even after a probe succeeded.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from textclf.errors import TextclfError

PROBE_S = 10.0  # one request, no retries
REQUEST_S = 10.0  # connect, each read, each write and the wait for a connection, per request
RECHECK_S = 60.0  # a failed probe is believed this long before the hub is asked again
WHAT_TO_DO = "try again later, or use a cached backbone or a local file"

DOWNLOAD_BARS = "huggingface_hub.http_get"  # the progress-bar group of hub downloads

_lock = threading.Lock()
_bounded = False
_answers: dict[tuple[str, str], tuple[float, Any]] = {}


class HubUnreachable(TextclfError):
    """The Hugging Face Hub (or the mirror ``HF_ENDPOINT`` names) did not answer in time."""


class HubMissing(TextclfError):
    """The hub answered: there is no such repository (or it is private or gated)."""


@dataclass(frozen=True)
class HubFile:
    """What the hub says of one file: its size in bytes (None when it does not say)."""

    repo_id: str
    filename: str
    size: int | None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def bound_requests() -> None:
    """Give every request of ``huggingface_hub`` (and so of transformers and datasets) ``REQUEST_S``-second timeouts.
    The client keeps the library's own request hooks (offline mode, request ids) and redirects; only its transport
    changes. Idempotent."""
    global _bounded
    with _lock:
        if _bounded:
            return
        import httpx2  # huggingface_hub's HTTP library
        from huggingface_hub import get_session, set_client_factory

        stock = get_session()  # the library's client as it makes it: copy its hooks and redirect policy

        class BoundedTransport(httpx2.HTTPTransport):
            def handle_request(self, request: Any) -> Any:
                asked = request.extensions.get("timeout") or {}
                request.extensions["timeout"] = {k: min(asked.get(k) or REQUEST_S, REQUEST_S)
                                                 for k in ("connect", "read", "write", "pool")}
                return super().handle_request(request)

        hooks, redirects = stock.event_hooks, stock.follow_redirects
        set_client_factory(lambda: httpx2.Client(event_hooks=hooks, follow_redirects=redirects,
                                                 timeout=REQUEST_S, transport=BoundedTransport()))
        _bounded = True


def show_download_progress() -> None:
    """Progress bars for files the hub sends (on stderr, also in a dashboard worker's log), unless
    ``HF_HUB_DISABLE_PROGRESS_BARS`` says otherwise; every other progress bar of the hub libraries stays as it is."""
    from huggingface_hub import constants
    from huggingface_hub.utils import enable_progress_bars

    if not constants.HF_HUB_DISABLE_PROGRESS_BARS:
        enable_progress_bars(DOWNLOAD_BARS)


def _unreachable(what: str, exc: BaseException) -> HubUnreachable:
    reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return HubUnreachable(f"the Hugging Face Hub ({endpoint()}) did not answer within {PROBE_S:g} s when asked for "
                          f"{what}: {reason}; {WHAT_TO_DO}")


def probe(repo_id: str, filename: str | None = None, repo_type: str = "model") -> HubFile:
    """Ask the hub about one file (or, with ``filename`` None, the repository), once, within ``PROBE_S`` seconds.
    Raises :class:`HubUnreachable` (no answer, or an error of the hub's own) or :class:`HubMissing` (no such
    repository or file). An answer is remembered for this process, a failure for ``RECHECK_S`` seconds, so a study
    does not wait on a dead hub once per trial."""
    key = (f"{endpoint()} {repo_type}:{repo_id}", filename or "")
    with _lock:
        seen = _answers.get(key)
    if seen is not None and (isinstance(seen[1], HubFile) or time.monotonic() - seen[0] < RECHECK_S):
        if isinstance(seen[1], BaseException):
            raise seen[1]
        return seen[1]
    try:
        answer: Any = _ask(repo_id, filename, repo_type)
    except TextclfError as exc:
        answer = exc
    with _lock:
        _answers[key] = (time.monotonic(), answer)
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _ask(repo_id: str, filename: str | None, repo_type: str) -> HubFile:
    import httpx2
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    bound_requests()
    kind = "dataset" if repo_type == "dataset" else "model"
    what = f"{repo_id}/{filename}" if filename else f"the {kind} {repo_id}"
    try:
        if filename is None:  # one GET of the repository's metadata (no retries in the library either)
            HfApi(endpoint=endpoint()).repo_info(repo_id, repo_type=repo_type, timeout=PROBE_S)
            return HubFile(repo_id, "", None)
        url = hf_hub_url(repo_id, filename, repo_type=repo_type, endpoint=endpoint())
        meta = get_hf_file_metadata(url, timeout=PROBE_S)
    except RepositoryNotFoundError:
        raise HubMissing(f"there is no {kind} {repo_id!r} on the Hugging Face Hub ({endpoint()}), or it is private "
                         f"or gated; check the id (e.g. 'owner/name')") from None
    except EntryNotFoundError:
        need = "; expected a transformers model with safetensors weights" if kind == "model" else ""
        raise HubMissing(f"the {kind} {repo_id!r} on the Hugging Face Hub has no {filename}{need}") from None
    except (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
        raise _unreachable(what, exc) from None
    except HfHubHTTPError as exc:  # it answered, with an error of its own (5xx, rate limit)
        status = exc.response.status_code if exc.response is not None else "an error"
        raise HubUnreachable(f"the Hugging Face Hub ({endpoint()}) answered {status} when asked for {what}; "
                             f"{WHAT_TO_DO}") from None
    return HubFile(repo_id, filename, meta.size)


def forget() -> None:
    """Drop every remembered answer (tests, or a long-running app after the hub came back)."""
    with _lock:
        _answers.clear()
