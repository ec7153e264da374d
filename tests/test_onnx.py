"""ONNX export: a folder Predictor serves like the PyTorch one, written only when it passes the parity gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from textclf.cli import main
from textclf.config import SearchSpace
from textclf.data import load_data
from textclf.onnx_export import ONNX_FILE, ExportRefused, export_onnx
from textclf.predict import Predictor
from textclf.study import StudyConfig, run_study

FAST = {"epochs": 2, "space": SearchSpace(lr=(1e-3, 2e-3), batch_sizes=(16,))}
TEXTS = ["Is it waterproof?", "It broke after a day", "Lovely, works great", "where do I find the charger?"]


@pytest.fixture(scope="module")
def kept(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kept models of one single-label study (BERT, RoBERTa, XLNet, MPNet) and one multi-label study."""
    root = tmp_path_factory.mktemp("onnx")
    storage = f"sqlite:///{root / 's.db'}"
    run_study(StudyConfig(study="o", data="demo", backbones=["tiny-bert", "tiny-roberta", "tiny-xlnet", "tiny-mpnet"],
                          trials=4, storage=storage, models_dir=str(root / "o"), **FAST), progress=False,
              log=lambda _: None)
    run_study(StudyConfig(study="ml", data="demo-multilabel", backbones=["tiny-bert"], trials=1, storage=storage,
                          threshold_mode="per_class", models_dir=str(root / "ml"), **FAST), progress=False,
              log=lambda _: None)
    folders = {name: root / "o" / name for name in ("tiny-bert", "tiny-roberta", "tiny-xlnet", "tiny-mpnet")}
    return folders | {"multi": root / "ml" / "tiny-bert", "storage": Path(storage.removeprefix("sqlite:///"))}


def _validation(name: str) -> tuple[list[str], list]:
    v = load_data(name).validation
    return v.texts, v.labels


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta", "tiny-xlnet", "tiny-mpnet"])
def test_export_passes_the_gate_and_serves_the_same_probabilities(kept: dict, tmp_path: Path, name: str) -> None:
    out = tmp_path / "onnx"
    report = export_onnx(kept[name], out, *_validation("demo"))
    assert report.fused["skip_layer_normalization"] >= 4  # onnxscript's ONNX Runtime fusions applied
    if name in ("tiny-bert", "tiny-roberta"):  # both layers' attention become ONNX Runtime's fused Attention kernel
        assert report.fused["attention"] == 2
    assert report.passed and report.agreement == 1.0 and abs(report.drop) < 1e-6
    assert (out / ONNX_FILE).is_file() and not list(out.glob("*.safetensors"))
    torch_p = Predictor.from_dir(kept[name], precision="fp32").predict_proba(TEXTS)
    onnx = Predictor.from_dir(out)
    np.testing.assert_allclose(onnx.predict_proba(TEXTS), torch_p, atol=1e-4)
    assert [p.label for p in onnx.predict(TEXTS)] == [p.label for p in Predictor.from_dir(kept[name]).predict(TEXTS)]
    assert onnx.predict_one(TEXTS[0]).label == onnx.predict(TEXTS[0])[0].label  # the batching path too


def test_multi_label_thresholds_survive(kept: dict, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    export_onnx(kept["multi"], out, *_validation("demo-multilabel"))
    torch_model, onnx = Predictor.from_dir(kept["multi"], precision="fp32"), Predictor.from_dir(out)
    assert len(set(onnx.thresholds.tolist())) > 1  # one per class
    np.testing.assert_array_equal(onnx.thresholds, torch_model.thresholds)
    texts = load_data("demo-multilabel").validation.texts
    assert [p.labels for p in onnx.predict(texts)] == [p.labels for p in torch_model.predict(texts)]


def test_a_model_that_disagrees_is_refused_and_nothing_is_written(kept: dict, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from textclf import onnx_export

    stock = onnx_export._export_graph

    def broken(model, tokenizer, path):  # a deliberately wrong graph: the logits negated (argmax becomes argmin)
        import copy

        wrong = copy.deepcopy(model)
        with torch.no_grad():
            for p in wrong.classifier.parameters():
                p.neg_()
        stock(wrong, tokenizer, path)

    monkeypatch.setattr(onnx_export, "_export_graph", broken)
    out = tmp_path / "onnx"
    with pytest.raises(ExportRefused, match=r"fails the parity gate: top labels agree on .* nothing was written"):
        export_onnx(kept["tiny-bert"], out, *_validation("demo"))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_int8_export(kept: dict, tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    export_onnx(kept["tiny-bert"], fp32, *_validation("demo"))
    try:
        report = export_onnx(kept["tiny-bert"], int8, *_validation("demo"), quantize="int8")
    except ExportRefused as exc:  # the gate's figures and the fp32 fallback, nothing written
        assert "(int8) fails the parity gate" in str(exc) and "as ONNX fp32 instead" in str(exc)
        assert not int8.exists()
        return
    assert report.passed and (int8 / ONNX_FILE).stat().st_size < (fp32 / ONNX_FILE).stat().st_size


def test_cli_export_onnx_then_predict(kept: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    storage = f"sqlite:///{kept['storage']}"
    out = tmp_path / "cli-onnx"
    assert main(["export", "--study", "o", "--storage", storage, "--backbone", "tiny-bert", "--format", "onnx",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity gate passed: top labels agree on 100.00%" in printed and str(out) in printed
    assert main(["predict", "--model", str(out), "--json", "Is it waterproof?"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]["label"] in {"complaint", "praise",
                                                                                        "question"}
    assert main(["export", "--study", "o", "--storage", storage, "--quantize", "int8", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--quantize needs --format onnx" in capsys.readouterr().err
