"""No lost work: a worker killed with SIGKILL mid-trial; rerunning the same command resumes, keeps every finished
trial with its metrics and model, fails the interrupted trial and retries it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from textclf.study import load_study

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


PG = os.environ.get("TEXTCLF_TEST_POSTGRES")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_mid_trial_then_rerun_resumes_and_retries(tiny_models: dict, tmp_path: Path, backend: str) -> None:
    if backend == "postgresql" and not PG:
        pytest.skip("no PostgreSQL: set TEXTCLF_TEST_POSTGRES (.ci/run starts one and sets it)")
    storage = f"sqlite:///{tmp_path / 'k.db'}" if backend == "sqlite" else PG
    study_name = f"kill-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TEXTCLF_STUDIES_DIR": str(tmp_path), "TEXTCLF_HEARTBEAT_S": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "textclf", "run", "--study", study_name, "--data", "demo", "--storage", storage,
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
                trials = load_study(study_name, storage).trials
            except Exception:  # the study is not created yet
                continue
            states = [t.state.name for t in trials]
            # Killed mid-training: the running trial has drawn all its parameters (a kill between two of its
            # suggestions leaves the retry to draw the rest anew, and its parameters would rightly differ).
            if (states.count("COMPLETE") >= 2 and states[-1] == "RUNNING"
                    and trials[-1].params.keys() == trials[0].params.keys()):
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    before = {t.number: t for t in load_study(study_name, storage).trials}
    finished = {n: t for n, t in before.items() if t.state.name == "COMPLETE"}
    interrupted = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert len(interrupted) == 1
    time.sleep(4)  # past the grace period (3 heartbeats of 1 s)

    done = subprocess.run([*cmd, "--trials", "1", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    after = {t.number: t for t in load_study(study_name, storage).trials}
    assert after[interrupted[0]].state.name == "FAIL"
    for n, t in finished.items():  # every finished trial is still there, with its metrics
        assert after[n].state.name == "COMPLETE" and after[n].user_attrs["metrics"] == t.user_attrs["metrics"]
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == interrupted[0]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == before[interrupted[0]].params
    model = tmp_path / "models" / study_name
    kept = [p for p in model.iterdir() if not p.name.startswith(".")]  # temporary folders are hidden (".name.tmp-…")
    assert len(kept) == 1 and (kept[0] / "model.safetensors").is_file() and (kept[0] / "textclf.json").is_file()


def test_a_trial_that_runs_out_of_memory_fails_with_its_reason_and_the_study_goes_on(
        tiny_models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.runner as runner_mod
    from textclf.study import SearchSpace, StudyConfig, run_study

    real_train = runner_mod.train
    calls = []

    def train_once_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("simulated: cannot allocate 2.0 GiB")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "train", train_once_out_of_memory)
    monkeypatch.setenv("TEXTCLF_STUDIES_DIR", str(tmp_path))
    summary = run_study(StudyConfig(study="oom", data="demo", backbones=["tiny-bert"], trials=3, epochs=1,
                                    space=SearchSpace(lr=(1e-3, 2e-3), batch_sizes=(16,))), progress=False,
                        log=lambda _: None)
    states = [t["state"] for t in summary["trials"]]
    assert states.count("FAIL") == 1 and len(states) == 3
    failed = next(t for t in summary["trials"] if t["state"] == "FAIL")
    assert failed["fail_reason"].startswith("MemoryError: simulated")
    kept = tmp_path / "models" / "oom" / "tiny-bert"
    assert (kept / "model.safetensors").is_file()  # the failure did not touch the kept best model
