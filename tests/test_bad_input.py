"""The rest of the bad-input matrix (the data errors are in test_data, config and CLI errors in test_study and
test_cli): huge texts, odd scripts, an empty text to predict, an unwritable export target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textclf.cli import main
from textclf.data import load_data
from textclf.errors import DataError
from textclf.study import SearchSpace, StudyConfig, best_model_dir, load_study, run_study

ODD = ["I love it 😍🔥👍", "zero\u200bwidth\u200cjoin\u200dtext", "هذا المنتج رائع جدا", "שלום עולם", "\u202emixed RTL override"]


@pytest.fixture(scope="module")
def model_dir(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad") / "studies"
    storage = f"sqlite:///{folder.parent / 'b.db'}"
    run_study(StudyConfig(study="b", data="demo", backbones=["tiny-bert"], trials=1, epochs=1, storage=storage,
                          models_dir=str(folder / "models" / "b"), space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))),
              progress=False, log=lambda _: None)
    return best_model_dir(load_study("b", storage))


def test_a_one_megabyte_text_loads_and_trains_truncated(tmp_path: Path) -> None:
    big = "word " * 210_000
    rows = "text,label\n" + f'"{big}",pos\n' + "".join(f"t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    (tmp_path / "d.csv").write_text(rows, encoding="utf-8")
    data = load_data(str(tmp_path / "d.csv"))
    assert max(len(t) for t in data.train.texts + data.validation.texts) > 1_000_000


@pytest.mark.parametrize("text", ["x " * 50_000, *ODD],
                         ids=["100k-chars", "emoji", "zero-width", "arabic", "hebrew", "rtl-override"])
def test_predicting_long_and_odd_texts(model_dir: Path, text: str) -> None:
    from textclf.predict import Predictor

    [pred] = Predictor.from_dir(model_dir).predict(text)
    assert pred.label in {"complaint", "praise", "question"} and pred.text == text


def test_empty_text_to_predict_is_one_clear_line(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from textclf.predict import Predictor

    with pytest.raises(DataError, match="text 1 is empty"):
        Predictor.from_dir(model_dir).predict("   ")
    assert main(["predict", "--model", str(model_dir), ""]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: text 1 is empty") and len(err.splitlines()) == 1


def test_export_into_an_unwritable_place_is_one_clear_line(model_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from textclf.errors import TextclfError
    from textclf.export import copy_model

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(TextclfError, match="cannot write the model"):
        copy_model(model_dir, blocker / "model")  # a path under a file: no process can create it, root included
    assert model_dir.is_dir() and (model_dir / "model.safetensors").is_file()  # nothing lost


def test_attention_over_odd_text_is_escaped(model_dir: Path) -> None:
    from textclf.attention import attention_view, text_html
    from textclf.predict import Predictor

    p = Predictor.from_dir(model_dir, attn_implementation="eager")
    view = attention_view(p.model, p.tokenizer, " ".join(ODD) + " <b>bold</b>", p.info.label_names)
    out = text_html(view.tokens, view.attentions[0].mean(0)[0], title="<b>t</b>")
    assert "<b>" not in out


# ------------------------------------------------------------------------------------------------ hostile CLI values
def storage_of(model_dir: Path) -> str:
    return f"sqlite:///{model_dir.parents[3] / 'b.db'}"


def test_export_never_deletes_what_it_did_not_write(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for args in (["--out", str(mine)], ["--out", str(mine), "--force"]):
        assert main(["export", "--study", "b", "--storage", storage_of(model_dir), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert "did not write" in err and len(err.splitlines()) == 1
    assert (mine / "notes.txt").read_text() == "keep me"
    monkeypatch.chdir(mine)  # `--out .` names the current folder, which holds the user's files
    assert main(["export", "--study", "b", "--storage", storage_of(model_dir), "--out", "."]) == 2
    assert (mine / "notes.txt").read_text() == "keep me"
    capsys.readouterr()

    fresh = tmp_path / "fresh"
    assert main(["export", "--study", "b", "--storage", storage_of(model_dir), "--out", str(fresh)]) == 0
    assert main(["export", "--study", "b", "--storage", storage_of(model_dir), "--out", str(fresh)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--study", "b", "--storage", storage_of(model_dir), "--out", str(fresh), "--force"]) == 0
    (fresh / "extra.txt").write_text("added by the user")  # now it is no longer only textclf's
    assert main(["export", "--study", "b", "--storage", storage_of(model_dir), "--out", str(fresh), "--force"]) == 2
    assert (fresh / "extra.txt").is_file() and (fresh / "model.safetensors").is_file()


def test_an_exported_model_can_be_read_by_others(model_dir: Path, tmp_path: Path) -> None:
    import os
    import stat

    from textclf.export import copy_model

    old = os.umask(0o022)
    try:
        out = copy_model(model_dir, tmp_path / "shared")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}


def test_a_study_never_replaces_a_folder_of_the_users(tiny_models: dict, tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "tiny-bert").mkdir(parents=True)
    (models / "tiny-bert" / "thesis.tex").write_text("years of work")
    storage = f"sqlite:///{tmp_path / 'u.db'}"
    run_study(StudyConfig(study="u", data="demo", backbones=["tiny-bert"], trials=1, epochs=1, storage=storage,
                          models_dir=str(models), space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))),
              progress=False, log=lambda _: None)
    [trial] = load_study("u", storage).trials
    assert trial.state.name == "COMPLETE" and "did not write" in trial.user_attrs["model_save_error"]
    assert (models / "tiny-bert" / "thesis.tex").read_text() == "years of work"


def long_texts_csv(path: Path) -> Path:
    words = ("the", "kettle", "broke", "after", "a", "week", "and", "support", "never", "answered", "my", "emails")
    rows = ["text,label"] + [f'"{" ".join(words[(i + j) % len(words)] for j in range(400))}",{"ab"[i % 2]}'
                             for i in range(24)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_max_length_beyond_the_model_is_cut_to_it_and_said(tiny_models: dict, studies: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    data = long_texts_csv(tmp_path / "long.csv")  # 400 words a text: far past the tiny model's 64 positions
    assert main(["run", "--study", "long", "--data", str(data), "--backbones", "tiny-bert", "--trials", "1",
                 "--epochs", "1", "--max-length", "100000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "max_length 100000 is more than tiny-bert takes: texts are cut at 64 tokens" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["n_trials"] == 1


def test_a_time_budget_used_up_by_setup_starts_no_trial(tiny_models: dict, studies: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--study", "short", "--data", "demo", "--backbones", "tiny-bert", "--timeout", "0.01",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert "no trial run" in captured.err
    trials = json.loads(captured.out.strip().splitlines()[-1])["trials"]
    assert {t["state"] for t in trials} == {"WAITING"}  # the recipe trial, queued, never started


def test_a_trial_that_fails_outside_the_training_loop_still_says_why(tiny_models: dict, studies: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.runner as runner_mod

    def broken(*args: object, **kwargs: object) -> float:
        raise RuntimeError("latency probe exploded")

    monkeypatch.setattr(runner_mod, "latency_ms", broken)  # runs after training, before the model is kept
    summary = run_study(StudyConfig(study="after", data="demo", backbones=["tiny-bert"], trials=1, epochs=1,
                                    space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))),
                        progress=False, log=lambda _: None)
    [trial] = summary["trials"]
    assert trial["state"] == "FAIL" and trial["fail_reason"] == "RuntimeError: latency probe exploded"


def test_a_stop_right_after_the_start_leaves_one_line_not_a_traceback(studies: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    for delay in (0.3, 1.0, 2.5):  # during imports, and later
        proc = subprocess.Popen([sys.executable, "-m", "textclf", "run", "--study", "stop", "--data", "demo"],
                                cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode, err)


# ------------------------------------------------------------------------------------------------ odd files
def test_a_json_object_of_columns_is_read_as_rows(tmp_path: Path) -> None:
    import json as json_mod

    texts = [f"text number {i}" for i in range(10)]
    (tmp_path / "cols.json").write_text(json_mod.dumps({"text": texts, "label": ["a", "b"] * 5}), encoding="utf-8")
    data = load_data(str(tmp_path / "cols.json"))
    assert len(data.train) + len(data.validation) == 10 and data.label_names == ["a", "b"]
    (tmp_path / "ragged.json").write_text(json_mod.dumps({"text": texts, "label": ["a"]}), encoding="utf-8")
    with pytest.raises(DataError, match="columns of different lengths"):
        load_data(str(tmp_path / "ragged.json"))
    (tmp_path / "deep.json").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        load_data(str(tmp_path / "deep.json"))


def test_a_semicolon_in_single_labels_is_said_to_make_the_file_multi_label(tmp_path: Path) -> None:
    rows = "text,label\n" + "".join(f"t{i},{'R&D; lab' if i % 2 else 'sales'}\n" for i in range(20))
    (tmp_path / "semi.csv").write_text(rows, encoding="utf-8")
    data = load_data(str(tmp_path / "semi.csv"))
    assert data.task == "multi_label"
    assert any("read as multi-label" in n and "single_label" in n for n in data.notes)
    assert load_data(str(tmp_path / "semi.csv"), task="single_label").label_names == ["R&D; lab", "sales"]


def test_a_label_column_of_long_texts_is_refused(tmp_path: Path) -> None:
    rows = "text,label\n" + "".join(f"t{i},{'x' * 300 if i % 2 else 'short'}\n" for i in range(10))
    (tmp_path / "long-labels.csv").write_text(rows, encoding="utf-8")
    with pytest.raises(DataError, match="has 300 characters, at most 200"):
        load_data(str(tmp_path / "long-labels.csv"))


def test_a_parquet_that_unpacks_far_beyond_its_size_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import textclf.data as data_mod

    monkeypatch.setattr(data_mod, "PARQUET_ALLOWANCE", 1 << 20)
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"text": ["same words again " * 200] * 2000, "label": ["a", "b"] * 1000}), path,
                   compression="zstd", use_dictionary=False)
    assert path.stat().st_size * 50 < 6_000_000  # small on disk, ~6.8 MB in memory
    with pytest.raises(DataError, match="unpacks to"):
        load_data(str(path))


def test_a_hub_id_never_reads_a_local_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    with pytest.raises(DataError) as offline:
        load_data("hub:someone/not-here")
    assert "Hugging Face Hub, which is off" in str(offline.value)
    for hub_off in ("1", "0"):  # offline the cache would be read, online the hub: neither for a local path
        monkeypatch.setenv("HF_HUB_OFFLINE", hub_off)
        for name in ("textclf", "tests", "textclf/samples"):
            with pytest.raises(DataError, match="also names a path on this server") as refused:
                load_data(f"hub:{name}")
            assert "__init__" not in str(refused.value)


def test_a_megabyte_text_is_cut_before_tokenising_with_the_same_answer(model_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from textclf.predict import Predictor

    p = Predictor.from_dir(model_dir, precision="fp32")
    text = "the blender broke after one week " * 35_000  # ~1.2 MB
    assert len(p._head(text)) < len(text) / 100  # what is tokenised
    cut = p.predict_proba([text])
    monkeypatch.setattr(Predictor, "_head", lambda self, t: t)
    assert cut.tolist() == p.predict_proba([text]).tolist()
    odd = "x" * 50_000 + " tail"  # no white space to cut at before the limit: tokenised whole, same answer
    assert p._head(odd) == odd


def test_an_interrupt_lost_in_a_garbage_collection_callback_prints_no_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from textclf.errors import quiet_lost_interrupt

    assert sys.unraisablehook is not quiet_lost_interrupt  # installed by python -m textclf only, not on import
    monkeypatch.setattr(sys, "unraisablehook", quiet_lost_interrupt)

    class Raises:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def __del__(self) -> None:  # an exception here cannot propagate: Python hands it to the hook
            raise self.exc

    Raises(KeyboardInterrupt())  # remembered by the CLI's handler: nothing to print
    assert capsys.readouterr().err == ""
    Raises(ValueError("a real problem"))
    assert "ValueError: a real problem" in capsys.readouterr().err
