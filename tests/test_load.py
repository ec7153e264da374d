"""Load: 100 concurrent predictions through the running app's HTTP API with no error, and a prediction answered
while a study trains in the background."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from textclf.study import SearchSpace, StudyConfig, load_study, run_study

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def post(url: str, payload: dict, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def served(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory):
    studies = tmp_path_factory.mktemp("load") / "studies"
    storage = f"sqlite:///{studies.parent / 'load.db'}"
    run_study(StudyConfig(study="served", data="demo", backbones=["tiny-bert"], trials=1, epochs=1, storage=storage,
                          models_dir=str(studies / "models" / "served"),
                          space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))), progress=False, log=lambda _: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TEXTCLF_STUDIES_DIR": str(studies), "TEXTCLF_STORAGE": storage}
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield url, storage, studies, env
    app.terminate()
    app.wait(20)


def test_100_concurrent_predictions_without_error(served: tuple) -> None:
    url = served[0]
    results: list[int | str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            status, body = post(url + "api/predict", {"text": f"Does item {i} come with a warranty?"})
            outcome: int | str = status if body.get("label") in {"complaint", "praise", "question"} else -1
        except Exception as exc:  # a refused or dropped connection is an error too: record it, don't lose it
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 100


def test_a_prediction_is_answered_while_a_study_trains(served: tuple, tiny_models: dict) -> None:
    url, storage, _studies, env = served
    worker = subprocess.Popen([sys.executable, "-m", "textclf", "run", "--study", "busy", "--data", "demo",
                               "--storage", storage, "--backbones", tiny_models["tiny-bert"], "--trials", "20",
                               "--epochs", "3", "--batch-sizes", "8", "--pruner", "none"],
                              cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(t.state.name == "RUNNING" for t in _trials(storage)):
            assert time.monotonic() < deadline and worker.poll() is None, "the study did not start training"
            time.sleep(0.3)
        start = time.monotonic()
        status, body = post(url + "api/predict", {"text": "It broke after a day"}, timeout=30)
        assert status == 200 and body["label"] in {"complaint", "praise", "question"}
        assert time.monotonic() - start < 10
        assert any(t.state.name == "RUNNING" for t in _trials(storage))  # it really was training meanwhile
    finally:
        worker.terminate()
        worker.wait(30)


def _trials(storage: str) -> list:
    try:
        return load_study("busy", storage).trials
    except Exception:  # not created yet
        return []
