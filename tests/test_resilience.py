"""No lost work: a worker killed with SIGKILL mid-trial; rerunning the same command resumes, keeps every finished
trial with its metrics and model, fails the interrupted trial and retries it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textclf.study import load_study

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_kill_9_mid_trial_then_rerun_resumes_and_retries(tiny_models: dict, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    env = {**os.environ, "TEXTCLF_STUDIES_DIR": str(tmp_path), "TEXTCLF_HEARTBEAT_S": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "textclf", "run", "--study", "kill", "--data", "demo", "--storage", storage,
           "--backbones", tiny_models["tiny-bert"], "--epochs", "3", "--batch-sizes", "8", "--pruner", "none",
           "--lr-range", "1e-3", "2e-3"]
    proc = subprocess.Popen([*cmd, "--trials", "50"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while True:
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.5)
            try:
                trials = load_study("kill", storage).trials
            except Exception:  # the study is not created yet
                continue
            states = [t.state.name for t in trials]
            if states.count("COMPLETE") >= 2 and states[-1] == "RUNNING":
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    before = {t.number: t for t in load_study("kill", storage).trials}
    finished = {n: t for n, t in before.items() if t.state.name == "COMPLETE"}
    interrupted = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert len(interrupted) == 1
    time.sleep(4)  # past the grace period (3 heartbeats of 1 s)

    done = subprocess.run([*cmd, "--trials", "1", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    after = {t.number: t for t in load_study("kill", storage).trials}
    assert after[interrupted[0]].state.name == "FAIL"
    for n, t in finished.items():  # every finished trial is still there, with its metrics
        assert after[n].state.name == "COMPLETE" and after[n].user_attrs["metrics"] == t.user_attrs["metrics"]
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == interrupted[0]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == before[interrupted[0]].params
    model = tmp_path / "models" / "kill"
    kept = [p for p in model.iterdir() if not p.name.startswith(".")]  # temporary folders are hidden (".name.tmp-…")
    assert len(kept) == 1 and (kept[0] / "model.safetensors").is_file() and (kept[0] / "textclf.json").is_file()
