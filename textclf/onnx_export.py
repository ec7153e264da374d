"""ONNX export with a parity gate, and the ONNX Runtime model :class:`textclf.predict.Predictor` serves.

``export_onnx`` writes a model folder whose weights are ``model.onnx`` (torch's own exporter, then onnxscript's
ONNX Runtime fusions: attention, skip-LayerNorm and bias-GELU become ONNX Runtime's fused kernels; optionally int8
weights through ONNX Runtime's dynamic quantiser) beside the same tokenizer, labels and thresholds. Before it is written it
must agree with the PyTorch model it came from on held-out texts: the same top labels on at least ``AGREE_MIN`` of
them and the study metric no more than ``DROP_MAX`` lower. Otherwise nothing is written and the figures say why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from textclf.errors import TextclfError

ONNX_FILE = "model.onnx"
AGREE_MIN = 0.995  # top labels agree on at least this share of the gate's texts
DROP_MAX = 0.005  # and the study metric falls by at most this (half a point)
QUANTIZE = ("int8",)


class ExportRefused(TextclfError):
    """The exported model failed the parity gate, or its architecture does not export."""


def is_onnx_folder(folder: str | Path) -> bool:
    return (Path(folder) / ONNX_FILE).is_file()


class OnnxClassifier:
    """An ONNX Runtime session called like a transformers classifier: ``model(**batch).logits``, where ``batch``
    holds the tokenizer's tensors. Inputs the graph does not take are left out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: Any) -> Any:
        import torch

        feeds = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.int64)
                 for k, v in batch.items() if k in self.inputs}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


@dataclass
class GateReport:
    """How the exported model compares with the PyTorch one on the gate's texts."""

    rows: int
    agreement: float  # share of rows with the same top label (multi-label: the same label set)
    metric: str
    torch_value: float
    onnx_value: float
    fused: dict[str, int] = field(default_factory=dict)  # onnxscript's fusions applied to the graph, and how often


    @property
    def drop(self) -> float:
        return self.torch_value - self.onnx_value

    @property
    def passed(self) -> bool:
        return self.agreement >= AGREE_MIN and self.drop <= DROP_MAX

    def line(self) -> str:
        return (f"top labels agree on {self.agreement:.2%} of {self.rows} rows (at least {AGREE_MIN:.1%} needed); "
                f"{self.metric} {self.torch_value:.4f} in PyTorch, {self.onnx_value:.4f} in ONNX (a drop of "
                f"{100 * self.drop:.2f} points, at most {100 * DROP_MAX:.1f} allowed)")


def _logits_module(model: Any, names: list[str]) -> Any:
    """The classifier with named tensor inputs and the logits alone as output, as the exporter traces it."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {"token_type_ids": token_type_ids} if "token_type_ids" in names else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return Logits().eval()


def _export_graph(model: Any, tokenizer: Any, path: Path) -> None:
    """torch's exporter (``torch.export``-based); where it cannot trace the model (XLNet's relative attention here),
    its TorchScript-based predecessor, which torch still ships. Both with a dynamic batch and sequence length."""
    import torch

    probe = tokenizer(["a first text", "and a second, longer one"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]
    module, args = _logits_module(model, names), tuple(probe[n] for n in names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["logits"],
                          dynamic_shapes={n: {0: batch, 1: seq} for n in names}, dynamo=True, external_data=False,
                          verbose=False)
        return
    except Exception as exc:  # an operator or a control flow torch.export cannot express
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
    path.unlink(missing_ok=True)
    try:
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names}, dynamo=False)
    except Exception as exc:
        second = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExportRefused(f"{type(model).__name__} does not export to ONNX with torch {torch.__version__}: "
                            f"{first} (TorchScript exporter: {second}); keep the PyTorch folder for this model") from None


def _fuse(path: Path) -> dict[str, int]:
    """Rewrite the exported graph with onnxscript's ONNX Runtime fusions (the tool made for torch.export graphs;
    ONNX Runtime's own ``optimizer`` only matches the TorchScript exporter's attention). Returns how often each
    fusion applied, e.g. ``{"attention": 6, "skip_layer_normalization": 12}``; a graph none of whose patterns match
    is left as it is, and the gate checks the result either way."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, counts = optimize_for_ort(ir.load(str(path)))
    fused = {name: n for name, n in counts.items() if n}
    if fused:
        ir.save(model, str(path))
    return fused


def _quantize(path: Path) -> None:
    """Dynamic int8 weights, one scale per output channel in 7 bits: of the quantiser's options, the one whose top
    labels stayed closest to fp32 on sst2 (docs/benchmarks.md §3). Fused kernels carry no type information for the
    quantiser's shape inference, hence the float default."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = path.with_name("model.int8.onnx")
    quantize_dynamic(str(path), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    int8.replace(path)


def gate(reference: Any, candidate: Any, texts: list[str], labels: list[Any], metric: str) -> GateReport:
    """Score ``candidate`` (a Predictor over the ONNX folder) against ``reference`` (the PyTorch one) on ``texts``."""
    from textclf.metrics import compute_metrics

    info = reference.info
    ref, got = reference.predict_proba(texts), candidate.predict_proba(texts)
    if info.task == "multi_label":
        same = ((ref >= reference.thresholds) == (got >= candidate.thresholds)).all(axis=1)
    else:
        same = ref.argmax(axis=1) == got.argmax(axis=1)
    before = compute_metrics(info.task, labels, ref, threshold=info.threshold, metric=metric)[metric]
    after = compute_metrics(info.task, labels, got, threshold=info.threshold, metric=metric)[metric]
    return GateReport(len(texts), float(same.mean()), metric, float(before), float(after))


def export_onnx(src: str | Path, out: str | Path, texts: list[str], labels: list[Any], *, quantize: str | None = None,
                force: bool = False) -> GateReport:
    """Write ``src`` (a textclf model folder) as an ONNX model folder at ``out`` if it passes the parity gate on
    ``texts``/``labels`` (the study's validation split); raise :class:`ExportRefused` with the figures if not."""
    from textclf.export import ModelInfo, check_replaceable, written_in_one_rename
    from textclf.predict import Predictor

    if quantize is not None and quantize not in QUANTIZE:
        raise TextclfError(f"quantize must be one of {', '.join(QUANTIZE)} or none, got {quantize!r}")
    if not texts:
        raise TextclfError("the parity gate needs labelled texts (the study's validation split); none were given")
    src, out = Path(src), Path(out).expanduser().resolve()
    info = ModelInfo.load(src)
    if out == src.resolve() or src.resolve().is_relative_to(out):
        raise TextclfError(f"{out} is where the model is kept, or a folder above it; choose another path")
    check_replaceable(out, force)  # before the minutes an export can take
    reference = Predictor.from_dir(src, precision="fp32")
    with written_in_one_rename(out, force) as tmp:
        for path in src.iterdir():  # tokenizer, labels, thresholds, card: all but the PyTorch weights
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".safetensors":
                shutil.copy2(path, tmp / path.name)
        _export_graph(reference.model, reference.tokenizer, tmp / ONNX_FILE)
        fused = _fuse(tmp / ONNX_FILE)
        if quantize == "int8":
            _quantize(tmp / ONNX_FILE)
        report = gate(reference, Predictor.from_dir(tmp), texts, labels, info.metric or "accuracy")
        report.fused = fused
        if not report.passed:
            fallback = "; export it as ONNX fp32 instead, without int8 weights" if quantize else ""
            raise ExportRefused(f"the ONNX model{' (int8)' if quantize else ''} fails the parity gate: "
                                f"{report.line()}; nothing was written{fallback}")
    return report
