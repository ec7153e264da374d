"""Many machines: worker processes sharing one study in PostgreSQL. .ci/run installs and starts PostgreSQL and sets
TEXTCLF_TEST_POSTGRES; elsewhere these tests skip and say so."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from textclf.errors import ConfigError
from textclf.study import load_study, open_storage

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("TEXTCLF_TEST_POSTGRES")
needs_pg = pytest.mark.skipif(not PG, reason="no PostgreSQL: set TEXTCLF_TEST_POSTGRES=postgresql://user:pw@host/db "
                                             "(.ci/run starts one and sets it)")


@needs_pg
@pytest.mark.slow
def test_four_workers_share_one_study(tiny_models: dict, tmp_path: Path) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TEXTCLF_STUDIES_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "textclf", "run", "--study", name, "--data", "demo", "--storage", PG,
           "--backbones", f"{tiny_models['tiny-bert']},{tiny_models['tiny-roberta']}", "--trials", "3", "--epochs", "1",
           "--batch-sizes", "16", "--lr-range", "5e-4", "3e-3", "--json"]
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(4)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-2000:]
    trials = load_study(name, PG).trials
    numbers = [t.number for t in trials]
    assert len(trials) == 12  # exactly 4 workers x 3 trials, the two recipe trials included once each
    assert len(set(numbers)) == len(numbers) == 12
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert sum(bool(t.user_attrs.get("recipe")) for t in trials) == 2
    # Each worker's closing summary sees the shared study.
    assert max(__import__("json").loads(out.strip().splitlines()[-1])["n_trials"] for out, _ in outputs) == 12


def test_unreachable_postgres_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="cannot open storage") as err:
        open_storage("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


def test_malformed_storage_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        open_storage("postgres-at-home")
