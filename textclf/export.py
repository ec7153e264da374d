"""Writing models as standard ``save_pretrained`` folders with label maps, thresholds and a model card.

Folders are written under a temporary name and renamed into place, so a reader never sees a half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textclf.errors import TextclfError

META_FILE = "textclf.json"


@dataclass
class ModelInfo:
    """What a saved model needs besides its weights: labels, task, threshold and where its numbers come from."""

    label_names: list[str]
    task: str
    backbone: str
    threshold: float | list[float] | None = None  # multi-label: one global threshold or one per class
    metrics: dict[str, Any] = field(default_factory=dict)   # {"validation": {...}, "test": {...}}
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    study: str | None = None
    trial: int | None = None

    @classmethod
    def load(cls, folder: str | Path) -> ModelInfo:
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise TextclfError(f"{folder} is not a textclf model folder: {META_FILE} is missing; "
                               "pass a folder written by 'python -m textclf export'")
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def _model_card(info: ModelInfo) -> str:
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [textclf, text-classification]",
        "---",
        "",
        f"# Text classifier fine-tuned from `{info.backbone}` with textclf",
        "",
        f"Task: {info.task.replace('_', '-')} classification over {len(info.label_names)} labels: "
        + ", ".join(f"`{n}`" for n in info.label_names) + ".",
    ]
    if isinstance(info.threshold, list):
        lines.append("A label is predicted when its sigmoid probability is at least its own threshold, chosen per "
                     "class on the validation split: " + ", ".join(f"`{n}` {t:.2f}" for n, t in
                                                                     zip(info.label_names, info.threshold, strict=True)) + ".")
    elif info.threshold is not None:
        lines.append(f"A label is predicted when its sigmoid probability is at least {info.threshold:.2f} "
                     "(chosen on the validation split).")
    if info.study is not None:
        lines.append(f"\nBest trial of backbone `{info.backbone}` in study `{info.study}` (trial {info.trial}).")
    for split, values in info.metrics.items():
        shown = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        if shown:
            lines += ["", f"## Metrics on the {split} split", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v:.4f} |" for k, v in shown.items()]
    if info.params:
        lines += ["", "## Hyperparameters", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info.params.items()]
    if info.data:
        lines += ["", "## Data", "", "```json", json.dumps(info.data, indent=2, default=str), "```"]
    lines += ["", "## Use", "", "```python", "from transformers import pipeline",
              'clf = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")',
              'print(clf("your text here", top_k=None))', "```", ""]
    return "\n".join(lines)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):  # nothing there yet (or another writer just moved it aside)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def save_model(model: Any, tokenizer: Any, out: str | Path, info: ModelInfo) -> Path:
    """Write a ``save_pretrained`` folder (model, tokenizer, labels, thresholds, model card) atomically."""
    out = Path(out).expanduser().resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
    except OSError as exc:
        raise TextclfError(f"cannot write the model to {out}: {exc.strerror or exc}; choose a writable folder") from exc
    try:
        model.config.id2label = dict(enumerate(info.label_names))
        model.config.label2id = {n: i for i, n in enumerate(info.label_names)}
        if info.threshold is not None:
            model.config.textclf_threshold = info.threshold  # extra config keys travel with config.json
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _record_padding_side(tmp, tokenizer.padding_side)
        (tmp / META_FILE).write_text(json.dumps(asdict(info), indent=2, default=str), encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(info), encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _record_padding_side(folder: Path, side: str) -> None:
    """save_pretrained keeps only constructor arguments, so a padding side set afterwards (left for XLNet, which
    classifies from the last token) would be lost and the reloaded tokenizer would pad on the right: write it down."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config["padding_side"] = side
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def copy_model(src: str | Path, out: str | Path) -> Path:
    """Copy a saved model folder to ``out`` atomically (used by ``export``)."""
    src, out = Path(src), Path(out).expanduser().resolve()
    ModelInfo.load(src)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        shutil.copytree(src, tmp)
    except OSError as exc:
        raise TextclfError(f"cannot write the model to {out}: {exc.strerror or exc}; choose a writable folder") from exc
    _replace_dir(tmp, out)
    return out
