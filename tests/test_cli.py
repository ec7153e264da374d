"""The command line: the JSON contract of run/show/predict, export, and one clear line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from textclf.cli import main

ROOT = Path(__file__).resolve().parents[1]


def last_json(out: str) -> object:
    return json.loads(out.strip().splitlines()[-1])


def test_run_show_export_predict_json_contract(tiny_models: dict, studies: Path, capsys: pytest.CaptureFixture) -> None:
    bert = tiny_models["tiny-bert"]  # a local model folder is a valid backbone name
    args = ["run", "--study", "cli1", "--data", "demo", "--backbones", f"{bert},scratch:{bert}", "--trials", "2",
            "--epochs", "1", "--lr-range", "5e-4", "3e-3", "--json"]
    assert main(args) == 0
    out = last_json(capsys.readouterr().out)
    for key in ("study", "storage", "metric", "n_trials", "best", "per_backbone", "baseline"):
        assert key in out
    assert out["study"] == "cli1" and out["n_trials"] == 2 and out["metric"] == "accuracy"
    assert set(out["best"]) >= {"value", "backbone", "params"}
    assert set(out["per_backbone"]) == {bert, f"scratch:{bert}"}
    assert out["storage"].startswith("sqlite:///") and isinstance(out["baseline"], float)

    assert main(["run", "--study", "cli1", "--data", "demo", "--trials", "1", "--json"]) == 0  # resume: stored backbones
    assert last_json(capsys.readouterr().out)["n_trials"] == 3

    assert main(["show", "--study", "cli1", "--json"]) == 0
    shown = last_json(capsys.readouterr().out)
    assert shown["n_trials"] == 3 and len(shown["trials"]) == 3

    target = studies / "model"
    assert main(["export", "--study", "cli1", "--backbone", f"scratch:{bert}", "--out", str(target)]) == 0
    assert "exported" in capsys.readouterr().out
    assert main(["predict", "--model", str(target), "--json", "Is it waterproof?", "Broke in a day"]) == 0
    preds = last_json(capsys.readouterr().out)
    assert len(preds) == 2
    for p in preds:
        assert p["label"] in {"complaint", "praise", "question"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--study", "../x", "--data", "demo"], "study name '../x' is not allowed"),
        (["run", "--study", "a", "--data", "no/such/file.csv"], "does not exist"),
        (["run", "--study", "a", "--data", "demo", "--backbones", "nope-backbone"], "unknown backbone"),
        (["run", "--study", "a", "--data", "demo", "--trials", "0"], "trials must be at least 1"),
        (["run", "--study", "a", "--data", "demo", "--lr-range", "1e-3", "1e-5"], "swap the bounds"),
        (["run", "--study", "a", "--data", "demo", "--ratio-range", "0", "10"], "must be positive"),
        (["run", "--study", "a", "--data", "demo", "--storage", "not a url"], "is not a database URL"),
        (["show", "--study", "missing"], "no study named 'missing'"),
        (["export", "--study", "missing", "--out", "x"], "no study named 'missing'"),
        (["predict", "--model", "/no/such/model", "hello"], "does not exist"),
        (["run", "--study", "a", "--data", "demo", "--max-length", "0"], "max_length must be at least 4"),
        (["run", "--study", "a", "--data", "demo", "--max-length", "-1"], "max_length must be at least 4"),
        (["run", "--study", "a", "--data", "demo", "--storage", "sqlite://"], "in-memory SQLite"),
        (["run", "--study", "a", "--data", "demo", "--storage", "sqlite:///:memory:"], "in-memory SQLite"),
        (["run", "--study", "a", "--data", "demo", "--batch-sizes", ""], "batch_sizes must be positive integers"),
        (["run", "--study", "a", "--data", "demo", "--jobs", "0"], "jobs must be between 1 and 64"),
        (["run", "--study", "a", "--data", "demo", "--timeout", "nan"], "positive, finite number of seconds"),
        (["run", "--study", "a", "--data", "demo", "--timeout", "inf"], "positive, finite number of seconds"),
        (["run", "--study", "a", "--data", "demo", "--lr-range", "10", "100"], "within (0, 1]"),
        (["run", "--study", "a" * 101, "--data", "demo"], "101 characters long"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(args: list[str], message: str, studies: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point_reports_errors_without_traceback(studies: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "textclf", "run", "--study", "x", "--data", "missing.csv"],
                          capture_output=True, text=True, env=env, cwd=studies.parent, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "missing.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_study_preset_file_supplies_settings_and_flags_override(tiny_models: dict, studies: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    studies.mkdir(parents=True, exist_ok=True)
    (studies / "pre.toml").write_text('data = "demo"\nbackbones = ["tiny-bert"]\ntrials = 5\nepochs = 1\n'
                                      'lr_range = [5e-4, 3e-3]\n')
    assert main(["run", "--study", "pre", "--trials", "1", "--json"]) == 0
    out = last_json(capsys.readouterr().out)
    assert out["n_trials"] == 1 and out["data"] == "demo" and list(out["per_backbone"]) == ["tiny-bert"]
    (studies / "bad.toml").write_text('data = "demo"\nlearning_rate = 3\n')
    assert main(["run", "--study", "bad"]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err
    (studies / "half.toml").write_text('data = "demo"\ntrials = 2.5\n')  # never silently 2
    assert main(["run", "--study", "half"]) == 2
    assert "trials must be a whole number, got 2.5" in capsys.readouterr().err


def test_no_progressive_pruning_flag_reaches_the_study(studies: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    import textclf.study
    from textclf.errors import ConfigError

    seen: list[bool] = []

    def fake_run_study(cfg: object, **_: object) -> None:
        seen.append(cfg.progressive_pruning)  # type: ignore[attr-defined]
        raise ConfigError("stop here")

    monkeypatch.setattr(textclf.study, "run_study", fake_run_study)
    assert main(["run", "--study", "p", "--data", "demo"]) == 2
    assert main(["run", "--study", "p", "--data", "demo", "--no-progressive-pruning"]) == 2
    assert seen == [True, False] and "stop here" in capsys.readouterr().err


def test_an_interrupt_that_surfaces_as_another_error_is_still_one_line(studies: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A Stop landing while a C extension initialises (scipy's pocketfft, imported by sklearn) surfaces as
    'ImportError: initialization failed' caused by the KeyboardInterrupt: still the one interrupted line."""
    import textclf.cli as cli

    def interrupted_import(args: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "_cmd_run", interrupted_import)
    assert main(["run", "--study", "x", "--data", "demo"]) == 130
    assert capsys.readouterr().err.strip().startswith("interrupted:")
    monkeypatch.setattr(cli, "_cmd_run", lambda args: (_ for _ in ()).throw(ImportError("a real one")))
    with pytest.raises(ImportError, match="a real one"):  # a genuine error is not hidden as an interrupt
        main(["run", "--study", "x", "--data", "demo"])


def test_a_run_whose_every_trial_fails_exits_1_with_the_reason(tiny_models: dict, studies: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    import shutil

    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny_models["tiny-bert"], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # loads as a folder, fails at its trial
    assert main(["run", "--study", "broken", "--data", "demo", "--backbones", str(broken), "--trials", "2",
                 "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no trial of this run finished (2 failed): ") and "Safetensor" in err[-1]


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "studies").glob("*.toml")))
def test_every_bundled_preset_is_a_valid_config(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from textclf.backbones import resolve_backbone
    from textclf.config import from_options, load_preset

    monkeypatch.setenv("TEXTCLF_STUDIES_DIR", str(ROOT / "studies"))
    raw = load_preset(preset)
    cfg = from_options(preset, raw)
    assert raw and cfg.data == raw["data"] and cfg.backbones == raw["backbones"]
    for name in cfg.backbones:
        assert resolve_backbone(name).name == name  # registered names, not folders
