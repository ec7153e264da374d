"""The app as a hostile visitor of a public Space meets it: every Gradio handler called through the queue protocol
the browser uses (found in the app's own config, so a handler added later is probed too), with made-up file
references, HTML payloads, path strings and oversized bodies; the REST endpoint; the caps of public mode.

The served model was trained on labels that are HTML and Markdown payloads, so every place a label name reaches a
page is exercised."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from textclf.dashboard import BEST, Dashboard, DashboardConfig, StudyForm
from textclf.errors import ConfigError
from textclf.safety import MAX_REQUEST_BYTES, MAX_TEXT_CHARS
from textclf.study import SearchSpace, StudyConfig, run_study

SECRET = "SECRET-7f3a9c-DO-NOT-SHOW"
HTML_LABELS = {"complaint": '<img src="http://127.0.0.1:9/pixel.png">',
               "praise": '<h1 style="position:fixed">SESSION EXPIRED</h1>',
               "question": '<a href="http://127.0.0.1:9/refund">claim</a> [your refund](http://127.0.0.1:9/r)'}
PAYLOADS = ['<img src=x onerror="window.__xss=1">', "textclf", "tests", "../../etc/passwd", "/etc/passwd",
            "~/.ssh/id_rsa", "studies", "x" * (MAX_TEXT_CHARS + 1)]
RAW_MARKUP = ("<img", "<h1", "<script", "<a ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def html_labelled_csv(path: Path) -> Path:
    from conftest import SAMPLES

    with open(SAMPLES / "demo" / "train.csv", encoding="utf-8") as fh:
        rows = [(r["text"], HTML_LABELS[r["label"]]) for r in csv.DictReader(fh)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def served(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app in public mode on a free port (uvicorn, as `python app.py` serves it), holding one model trained on
    HTML label names, and a secret file on the server that no visitor may read."""
    import uvicorn

    from app import build_app, build_demo

    root = tmp_path_factory.mktemp("security")
    studies = root / "studies"
    storage = f"sqlite:///{root / 'textclf.db'}"
    data = html_labelled_csv(root / "html-labels.csv")
    run_study(StudyConfig(study="html", data=str(data), backbones=["tiny-bert"], trials=1, epochs=1, storage=storage,
                          models_dir=str(studies / "models" / "html"),
                          space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))), progress=False, log=lambda _: None)
    secret = root / "secret.csv"
    secret.write_text(f"text,label\n{SECRET} one,a\n{SECRET} two,b\n{SECRET} three,a\n{SECRET} four,b\n",
                      encoding="utf-8")
    # Its own upload folder (public mode deletes the files it made there): nothing else on the machine shares it.
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")
    cfg = DashboardConfig.from_env(storage=storage, studies_dir=studies, public=True)
    dash = Dashboard(cfg)
    app = build_app(dash, build_demo(dashboard=dash))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/config", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield {"base": base, "dash": dash, "secret": secret, "root": root, "data": data}
    server.should_exit = True
    thread.join(10)
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


# ------------------------------------------------------------------------------------------------ the queue protocol
def config(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/config", timeout=10).json()


def call(base: str, fn_index: int, data: list[Any], session: str = "visitor-1", timeout: float = 120,
         logs: list[dict] | None = None) -> dict:
    """One event through /gradio_api/queue/join and its SSE stream, as the browser sends it; returns the
    process_completed message ({"success", "output": {"data"} or {"error"}}). The event's toasts (gr.Warning,
    gr.Info: "log" messages) are added to ``logs`` when given."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = httpx.post(f"{base}/gradio_api/queue/join", json=body, timeout=30)
    if joined.status_code == 422:  # refused at the door (textclf.gradio_guard), in the same shape
        return {"msg": "process_completed", "success": False, "output": {"error": joined.json()["error"]}}
    assert joined.status_code == 200, joined.text
    event_id = joined.json()["event_id"]
    with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("event_id") == event_id and msg.get("msg") == "log" and logs is not None:
                logs.append(msg)
            if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                return msg
    raise AssertionError("no process_completed message")


def handlers(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dependency a visitor can trigger, with its input components' types."""
    types = {c["id"]: c for c in cfg["components"]}
    out = []
    for dep in cfg["dependencies"]:
        inputs = [types[i] for i in dep["inputs"]]
        out.append({"fn_index": dep["id"], "inputs": inputs, "outputs": [types[i] for i in dep["outputs"]],
                    "name": dep.get("api_name") or f"fn {dep['id']}"})
    return out


def file_ref(path: str | Path) -> dict[str, Any]:
    return {"path": str(path), "orig_name": "data.csv", "meta": {"_type": "gradio.FileData"}}


def hostile_value(component: dict[str, Any], payload: str, ref: dict[str, Any]) -> Any:
    kind = component["type"]
    props = component.get("props", {})
    if kind in ("file", "uploadbutton", "image", "audio", "video"):
        return ref
    if kind in ("checkboxgroup",) or (kind == "dropdown" and props.get("multiselect")):
        return [payload]
    if kind in ("textbox", "dropdown", "radio", "markdown", "html"):
        return payload
    if kind in ("number", "slider"):
        return 1e308
    return None


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def rendered(markdown: str) -> str:
    """Markdown as a CommonMark renderer turns it into HTML (Gradio's renderer follows CommonMark's escapes)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def assert_no_markup(kind: str, value: Any) -> None:
    """A payload's tags, links or images must not survive where this output kind renders markup."""
    if kind == "markdown":
        for s in strings(value):
            html_out = rendered(s)
            for tag in RAW_MARKUP:
                assert tag not in html_out, f"markup {tag!r} rendered from: {s[:200]}"
    elif kind in ("html", "plot"):
        for s in strings(value):
            for raw in RAW_MARKUP:
                assert raw not in s, f"raw markup {raw!r} reached the page: {s[:200]}"


def assert_nothing_leaks(served: dict[str, Any], msg: dict[str, Any], outputs: list[dict] | None = None) -> None:
    """No secret, no server path, no traceback, no markup from a payload where it would render; an error is one
    escaped line (Gradio renders toasts as HTML)."""
    text = json.dumps(msg)
    assert SECRET not in text
    for root in (str(served["root"]), str(Path.cwd()), str(Path(served["dash"].cfg.uploads))):
        assert root not in text, f"a server path reached the visitor: {root}"
    assert "Traceback" not in text
    output = msg.get("output") or {}
    if output.get("error"):
        assert "\n" not in output["error"].strip()
        assert_no_markup("html", output["error"])
    for component, value in zip(outputs or [], output.get("data") or [], strict=False):
        assert_no_markup(component["type"], value)
    for s in strings(output.get("data", [])):
        if "/gradio_api/file=" in s:
            served_file = httpx.get(f"{served['base']}{s[s.index('/gradio_api/file='):]}", timeout=10)
            assert SECRET not in served_file.text


def by_inputs(cfg: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [h for h in handlers(cfg) if tuple(c["type"] for c in h["inputs"]) == kinds]


# ------------------------------------------------------------------------------------------------ probes
def test_every_handler_survives_hostile_input(served: dict[str, Any], capfd: pytest.CaptureFixture) -> None:
    """Discovered from the config: each handler with inputs gets each payload in every input and a made-up file
    reference in every file input, then inputs of the wrong type; none may leak a file, a path, a traceback or
    markup, and the server log gets no traceback either."""
    cfg = config(served["base"])
    probed = [h for h in handlers(cfg) if h["inputs"]]
    assert len(probed) >= 10  # load data, start, stop, resume, status, compare, attention, predict ×2, batch…
    upload = served["dash"].cfg.uploads
    refs = [file_ref(served["secret"]), file_ref(f"{upload}/../{Path(served['secret']).relative_to('/')}"),
            file_ref("README.md"), file_ref("/etc/passwd")]
    for h in probed:
        calls = [[hostile_value(c, payload, refs[i % len(refs)]) for c in h["inputs"]]
                 for i, payload in enumerate(PAYLOADS)]
        calls += [[None] * len(h["inputs"]), ["7"] * len(h["inputs"]), [{"a": 1}] * len(h["inputs"]),
                  [[1, 2]] * len(h["inputs"]), [True] * len(h["inputs"])]
        for data in calls:
            msg = call(served["base"], h["fn_index"], data)
            assert_nothing_leaks(served, msg, h["outputs"])
    assert served["dash"].studies.running() == []  # no payload started a study
    log = capfd.readouterr().err
    failures = sorted(set(re.findall(r"Could not preprocess input component at index \d+ \(a `\w+` component\)"
                                     r"|\w+Error: [^\n]{0,160}", log)))
    assert "Traceback" not in log, failures or log[log.index("Traceback"):][:3000]


def test_a_file_that_was_not_uploaded_is_never_read(served: dict[str, Any]) -> None:
    cfg = config(served["base"])
    batch = by_inputs(cfg, ("file", "dropdown"))
    load = by_inputs(cfg, ("dropdown", "file", "textbox"))
    assert batch and load
    # A server file, one relative to the working directory, and URLs (Gradio would fetch those itself: a way to
    # reach addresses only the server can, such as a cloud metadata service).
    refs = [file_ref(served["secret"]), file_ref("pyproject.toml"), file_ref("http://127.0.0.1:9/latest/meta-data"),
            {"path": str(served["secret"])}, {"path": "x", "url": f"{served['base']}/gradio_api/file={served['secret']}",
                                             "meta": {"_type": "gradio.FileData"}}]
    for ref in refs:
        for h, data in ((batch[0], [ref, BEST]), (load[0], ["demo", ref, ""])):
            msg = call(served["base"], h["fn_index"], data)
            assert msg["success"] is False and "not uploaded" in msg["output"]["error"]
            assert_nothing_leaks(served, msg)


def test_gradios_file_route_serves_no_server_file(served: dict[str, Any]) -> None:
    for name in (str(served["secret"]), "README.md", "/etc/passwd", "studies/textclf.db", "../../etc/passwd"):
        reply = httpx.get(f"{served['base']}/gradio_api/file={name}", timeout=10)
        assert reply.status_code in (403, 404) and SECRET not in reply.text and "root:" not in reply.text


def upload(served: dict[str, Any], path: Path) -> str:
    with open(path, "rb") as fh:
        reply = httpx.post(f"{served['base']}/gradio_api/upload", files={"files": (path.name, fh, "text/csv")},
                           timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()[0]


def test_a_real_upload_still_works_and_its_labels_are_escaped(served: dict[str, Any], tmp_path: Path) -> None:
    """The positive control: a file uploaded through Gradio is read, and the HTML label names it holds come back
    as text in the Data section's summary and chart."""
    cfg = config(served["base"])
    loads = by_inputs(cfg, ("dropdown", "file", "textbox"))  # Load data, a preset's pick, the page load: one handler
    assert len(loads) == 3
    load = loads[0]
    named = tmp_path / "<img src=x>reviews.csv"
    named.write_text(served["data"].read_text(encoding="utf-8"), encoding="utf-8")
    msg = call(served["base"], load["fn_index"], ["demo", file_ref(upload(served, named)), ""])
    assert msg["success"], msg
    assert_nothing_leaks(served, msg, load["outputs"])
    summary = msg["output"]["data"][1]
    assert "reviews" in summary and "<img" not in summary and "3 labels" in summary
    [batch] = by_inputs(cfg, ("file", "dropdown"))
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nIs it waterproof?\n=HYPERLINK(\"http://127.0.0.1:9\")\n", encoding="utf-8")
    msg = call(served["base"], batch["fn_index"], [file_ref(upload(served, texts)), "html / tiny-bert"])
    assert msg["success"], msg
    result = httpx.get(f"{served['base']}/gradio_api/file={msg['output']['data'][0]['path']}", timeout=10).text
    rows = list(csv.reader(result.splitlines()))
    assert rows[0][:2] == ["text", "label"] and len(rows) == 3
    assert set(rows[0][2:]) == set(HTML_LABELS.values())  # a CSV holds data: label names are written as they are


@pytest.mark.parametrize(("cell", "written"), [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
                                               ("+1", "'+1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
                                               ("\tx", "'\tx"), ("praise", "praise"), ("", "")])
def test_no_csv_cell_starts_a_spreadsheet_formula(cell: str, written: str) -> None:
    from textclf.safety import csv_cell

    assert csv_cell(cell) == written


def test_predict_info_shows_html_label_names_as_text(served: dict[str, Any]) -> None:
    """The Gradio /predict API: a client that never loaded the page may name any trained model, and the label
    line is escaped Markdown."""
    cfg = config(served["base"])
    [predict] = [h for h in handlers(cfg) if h["name"] == "predict"]
    msg = call(served["base"], predict["fn_index"], ["Is it waterproof?", "html / tiny-bert"])
    assert msg["success"], msg
    assert_nothing_leaks(served, msg, predict["outputs"])
    info = msg["output"]["data"][1]
    assert " ms" in info and any(label in rendered(info) for label in
                                 ("&lt;h1 style", "&lt;img src", "&lt;a href"))  # shown as text
    unknown = call(served["base"], predict["fn_index"], ["hi", "other / model"])
    assert unknown["success"] is False and "pick one from the list" in unknown["output"]["error"]


def test_rest_endpoint_caps_bodies_and_answers_every_error_as_json(served: dict[str, Any]) -> None:
    base = served["base"]
    start = time.perf_counter()
    big = httpx.post(f"{base}/api/predict", content=json.dumps({"text": "x " * 2_500_000}),
                     headers={"content-type": "application/json"}, timeout=30)
    assert big.status_code == 413 and "limit" in big.json()["error"] and time.perf_counter() - start < 2

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds as the body arrives
        yield b'{"text": "'
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    chunked = httpx.post(f"{base}/api/predict", content=chunks(), headers={"content-type": "application/json"},
                         timeout=30)
    assert chunked.status_code == 413
    long = httpx.post(f"{base}/api/predict", json={"text": "z" * (MAX_TEXT_CHARS + 1)}, timeout=30)
    assert long.status_code == 422 and f"{MAX_TEXT_CHARS:,}" in long.json()["error"]
    deep = '{"text": ' + "[" * 5000 + "]" * 5000 + "}"
    for body in ('{"text": NaN}', '{"text": 5}', '{"model": "x"}', "[1, 2]", "not json", '{"text": null}', deep):
        bad = httpx.post(f"{base}/api/predict", content=body, headers={"content-type": "application/json"}, timeout=10)
        assert bad.status_code in (400, 422), (body[:40], bad.text)
        assert set(bad.json()) == {"error"} and "\n" not in bad.json()["error"]
    unknown = httpx.post(f"{base}/api/predict", json={"text": "hi", "model": "../../etc"}, timeout=10)
    assert unknown.status_code == 422 and str(served["root"]) not in unknown.text
    ok = httpx.post(f"{base}/api/predict", json={"text": "Is it waterproof?", "model": "html / tiny-bert"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["label"] in HTML_LABELS.values()  # JSON carries data, not markup


def test_the_gate_refuses_unknown_handlers_and_deep_nesting_in_one_line(served: dict[str, Any],
                                                                       capfd: pytest.CaptureFixture) -> None:
    base = served["base"]
    bodies = [{"data": [], "fn_index": 999, "session_hash": "s"}, {"data": [], "fn_index": None, "session_hash": "s"}]
    for body in bodies:
        reply = httpx.post(f"{base}/gradio_api/queue/join", json=body, timeout=10)
        assert reply.status_code == 422 and "no such handler" in reply.json()["error"]
    for nested in ("[" * 5000 + "]" * 5000, '{"a":' * 900 + "1" + "}" * 900):
        reply = httpx.post(f"{base}/gradio_api/queue/join", content=f'{{"data": [{nested}], "fn_index": 0, '
                           '"session_hash": "s"}', headers={"content-type": "application/json"}, timeout=10)
        assert reply.status_code == 422 and "nested" in reply.json()["error"]
    assert "Traceback" not in capfd.readouterr().err


def test_uploads_stop_when_the_upload_folder_is_full(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from app import build_app, build_demo

    dash = served["dash"]
    body = {"files": ("t.csv", b"text,label\na,b\n")}
    with TestClient(build_app(dash, build_demo(dashboard=dash))) as client:
        assert client.post("/gradio_api/upload", files=body).status_code == 200
    monkeypatch.setattr(dash.cfg, "max_uploads_mb", 0.0)
    with TestClient(build_app(dash, build_demo(dashboard=dash))) as client:
        full = client.post("/gradio_api/upload", files=body)
    assert full.status_code == 507 and "try again later" in full.json()["error"]


def test_gradio_api_refuses_an_oversized_text_quickly(served: dict[str, Any]) -> None:
    cfg = config(served["base"])
    [predict] = [h for h in handlers(cfg) if h["name"] == "predict"]
    start = time.perf_counter()
    msg = call(served["base"], predict["fn_index"], ["w " * (MAX_TEXT_CHARS // 2 + 1), BEST])
    assert msg["success"] is False and "limit" in msg["output"]["error"] and time.perf_counter() - start < 5
    body = {"data": ["v" * (2 * MAX_REQUEST_BYTES), BEST], "fn_index": predict["fn_index"], "session_hash": "big"}
    assert httpx.post(f"{served['base']}/gradio_api/queue/join", json=body, timeout=30).status_code == 413


def test_a_data_load_that_fails_says_why_in_a_toast_and_keeps_what_is_shown(served: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    """No "Error" badges over the preview and chart: the data shown (and the data a study will use) stay."""
    load = by_inputs(config(served["base"]), ("dropdown", "file", "textbox"))[0]
    bad = tmp_path / "<b>one-label.csv"
    bad.write_text("text,label\nfine\tx,a\nalso fine,a\n", encoding="utf-8")
    logs: list[dict] = []
    msg = call(served["base"], load["fn_index"], ["demo", file_ref(upload(served, bad)), ""], logs=logs)
    assert msg["success"], msg
    state, *shown = msg["output"]["data"]  # the chosen data (a server-side State, never sent), then what is shown
    assert state is None and all(isinstance(v, dict) and v == {"__type__": "update"} for v in shown), shown
    [toast] = [m for m in logs if m.get("level") == "warning"]
    assert "label" in toast["log"] and "data shown is unchanged" in toast["log"]
    assert "<b>" not in toast["log"] and str(tmp_path) not in toast["log"] and "Traceback" not in toast["log"]


def test_the_hub_box_never_reads_local_folders(served: dict[str, Any]) -> None:
    dash = served["dash"]
    for name in ("textclf", "tests", "studies", "textclf/samples", ".", "..", "a/../b"):
        try:
            source = dash.resolve_data(None, None, name)
        except ConfigError:
            continue
        except Exception as exc:  # DataError: refused as an id
            assert "train.csv" not in str(exc) and "__init__" not in str(exc)
            continue
        with pytest.raises(Exception) as err:
            dash.describe_data(source)
        message = dash.visible(str(err.value))
        assert "train.csv" not in message and "__init__" not in message and "conftest" not in message


def test_public_mode_downloads_no_large_hub_dataset(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    asked: list[str] = []

    def info(self: Any, repo_id: str, **kwargs: Any) -> Any:
        asked.append(repo_id)
        return SimpleNamespace(siblings=[SimpleNamespace(size=150_000_000), SimpleNamespace(size=90_000_000)])

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(HfApi, "dataset_info", info)
    dash = served["dash"]
    with pytest.raises(Exception, match="is 240 MB on the hub, the limit here is 200 MB"):
        dash.describe_data(dash.resolve_data(None, None, "someone/huge"))
    assert asked == ["someone/huge"]


# ------------------------------------------------------------------------------------------------ public mode
def test_public_mode_stop_is_for_the_session_that_started(served: dict[str, Any]) -> None:
    import subprocess
    import sys

    from textclf.dashboard import Worker

    dash = served["dash"]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    dash.studies._workers["theirs"] = Worker("theirs", proc, served["root"] / "theirs.log", time.time(), owner="a")
    try:
        with pytest.raises(ConfigError, match="started by another visitor"):
            dash.stop_study("theirs", owner="b")
        assert proc.poll() is None
        assert "Stopped" in dash.stop_study("theirs", owner="a")
        assert proc.poll() is not None
    finally:
        proc.kill()
        dash.studies._workers.pop("theirs", None)


def test_public_mode_caps_hold_on_resume_and_seeds(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    dash = served["dash"]
    started: list[Any] = []
    monkeypatch.setattr(dash.studies, "start", lambda cfg, owner=None: started.append(cfg))
    monkeypatch.setattr(dash.cfg, "max_train_samples", 100)  # the stored study trains on 216 rows
    with pytest.raises(ConfigError, match="the limit here is 100"):
        dash.resume_study("html", 2, None)
    monkeypatch.setattr(dash.cfg, "max_train_samples", 2000)
    assert "resumed" in dash.resume_study("html", 2, None)
    assert started[-1].timeout == 30 * 60.0 and started[-1].data == str(served["data"])  # every public study ends
    with pytest.raises(ConfigError, match="the limit here is 8"):
        dash.start_study("s", StudyForm("demo", ["minilm", "scratch:minilm"], 4, seeds=3))
    with pytest.raises(ConfigError, match="whole number"):
        dash.start_study("s", StudyForm("demo", ["minilm"], 2.5))
    with pytest.raises(ConfigError, match="between 1 and 1"):
        dash.start_study("s", StudyForm("demo", ["minilm"], 2, jobs=2))
    monkeypatch.setattr(dash.cfg, "max_studies", 1)  # the storage holds "html": a new study has no room
    with pytest.raises(ConfigError, match="holds 1 studies, the limit here is 1"):
        dash.start_study("another", StudyForm("demo", ["minilm"], 2))
    assert len(started) == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"timeout_min": -5}, "positive number of minutes"),
    ({"timeout_min": float("nan")}, "positive number of minutes"),
    ({"backbones": ["minilm", "minilm"]}, "lists a name twice"),
    ({"backbones": ["/etc"]}, "not offered here"),
    ({"study": "<b>x</b>"}, "not allowed"),
    ({"study": "a" * 101}, "101 characters"),
    ({"lr": (10.0, 100.0)}, "within \\(0, 1\\]"),
    ({"epochs": 2.5}, "whole number"),
])
def test_a_study_the_worker_would_refuse_is_refused_before_it_starts(served: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    change: dict, message: str) -> None:
    dash = served["dash"]
    monkeypatch.setattr(dash.studies, "start", lambda *a, **k: pytest.fail("a worker was started"))
    change = dict(change)
    study = change.pop("study", "ok")
    form = StudyForm("demo", ["minilm"], 2, lr=(1e-5, 1e-4), head_lr_ratio=(1.0, 10.0), batch_sizes=[16])
    with pytest.raises(ConfigError, match=message):
        dash.start_study(study, replace(form, **change))


def test_a_worker_that_fails_at_once_says_why_in_the_study_section(tmp_path: Path) -> None:
    dash = Dashboard(DashboardConfig.from_env(studies_dir=tmp_path / "studies"))
    assert "started" in dash.start_study("gone", StudyForm("hub:someone/not-here", ["minilm"], 1))
    worker = dash.studies.worker("gone")
    worker.process.wait(120)
    rows, line = dash.study_status("gone")
    assert rows == [] and "did not start (exit 2)" in line and "Hugging Face Hub" in line
    assert str(tmp_path) not in line


def test_gradios_own_upload_check_is_switched_on_and_checks_itself(served: dict[str, Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio import processing_utils

    from app import build_demo
    from textclf.gradio_uploads import refuse_files_not_uploaded

    demo = build_demo(dashboard=served["dash"])
    assert not demo.has_launched and refuse_files_not_uploaded(demo) and demo.has_launched

    def lenient(path: Any, check_in_upload_folder: bool) -> None:  # reads has_launched, refuses nothing
        _ = getattr(path, "has_launched", None)

    monkeypatch.setattr(processing_utils, "_check_allowed", lenient)
    assert refuse_files_not_uploaded(build_demo(dashboard=served["dash"])) is False  # said, not trusted
    monkeypatch.setattr(processing_utils, "_check_allowed", lambda path, check: None)
    assert refuse_files_not_uploaded(build_demo(dashboard=served["dash"])) is False  # not the code it knows
