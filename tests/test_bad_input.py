"""The rest of the bad-input matrix (the data errors are in test_data, config and CLI errors in test_study and
test_cli): huge texts, odd scripts, an empty text to predict, an unwritable export target."""

from __future__ import annotations

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
