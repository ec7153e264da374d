"""MPNet as a backbone: its tokenizer, head and relative attention through a study, a kept model and its predictor;
and the registry's ``mpnet``, found in the cache once ``fetch mpnet`` has put it there (a tiny stand-in here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
from textclf.config import SearchSpace
from textclf.fetch import MARKER, MPNET
from textclf.predict import Predictor
from textclf.study import StudyConfig, run_study

FAST = {"epochs": 2, "space": SearchSpace(lr=(1e-3, 2e-3), batch_sizes=(16,))}


def test_a_study_over_mpnet_and_its_scratch_control(tiny_models: dict, studies: Path) -> None:
    summary = run_study(StudyConfig(study="mp", data="demo", backbones=["tiny-mpnet", "scratch:tiny-mpnet"], trials=2,
                                    **FAST), progress=False, log=lambda _: None)
    assert summary["run"]["finished"] == 2 and set(summary["per_backbone"]) == {"tiny-mpnet", "scratch:tiny-mpnet"}
    folder = studies / "models" / "mp" / "tiny-mpnet"
    predictor = Predictor.from_dir(folder)
    preds = predictor.predict(["Is it waterproof?", "It broke after a day"])
    assert all(p.label in {"complaint", "praise", "question"} for p in preds)
    assert sum(preds[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_mpnet_tokenizer_and_head(tiny_models: dict) -> None:
    spec = resolve_backbone("tiny-mpnet")
    tok = load_tokenizer(spec)
    ids = tok("great value")["input_ids"]
    assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<s>", "</s>"]  # the head reads <s>
    assert tok.padding_side == "right"
    model = load_model(spec, num_labels=3, multi_label=False, pad_token_id=tok.pad_token_id, seed=0)
    assert type(model).__name__ == "MPNetForSequenceClassification"
    assert head_prefixes(model, spec) == ("classifier",)
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"mpnet", "classifier"}


def test_registry_mpnet_is_the_fetched_folder(tiny_models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              studies: Path) -> None:
    monkeypatch.setenv("TEXTCLF_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / MPNET.folder
    shutil.copytree(tiny_models["tiny-mpnet"], folder)  # stands in for what `fetch mpnet` writes
    spec = resolve_backbone("mpnet")
    assert spec.family == "mpnet" and spec.location() == spec.hub_id  # no marker yet: not a completed fetch
    (folder / MARKER).write_text(json.dumps({"source": "tests"}))
    assert resolve_backbone("mpnet").location() == str(folder)
    summary = run_study(StudyConfig(study="mp2", data="demo", backbones=["mpnet"], trials=1, **FAST),
                        progress=False, log=lambda _: None)
    assert summary["run"]["finished"] == 1
