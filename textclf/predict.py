"""Prediction with a saved textclf model folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textclf.errors import DataError, TextclfError
from textclf.export import ModelInfo
from textclf.metrics import softmax_or_sigmoid


@dataclass
class Prediction:
    text: str
    label: str                       # the most probable label
    labels: list[str]                # single-label: [label]; multi-label: every label at or above the threshold
    probabilities: dict[str, float]  # per label, sorted from most to least probable

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "labels": self.labels, "probabilities": self.probabilities}


class Predictor:
    """Loads a folder written by :func:`textclf.export.save_model` and classifies texts."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, max_length: int = 512) -> None:
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.max_length = min(max_length, int(getattr(tokenizer, "model_max_length", max_length) or max_length))

    @classmethod
    def from_dir(cls, folder: str | Path, *, attn_implementation: str | None = None) -> Predictor:
        from textclf.backbones import _quiet_transformers

        transformers = _quiet_transformers()
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise TextclfError(f"model folder {str(folder)!r} does not exist; pass a folder written by export")
        info = ModelInfo.load(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=True, **kwargs)
        model.eval()
        return cls(model, tok, info)

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import torch

        probs = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                probs.append(softmax_or_sigmoid(self.model(**batch).logits.float().numpy(), self.info.task))
        return np.concatenate(probs) if probs else np.zeros((0, len(self.info.label_names)))

    def predict(self, texts: str | list[str]) -> list[Prediction]:
        if isinstance(texts, str):
            texts = [texts]
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"text {i + 1} is empty: expected some words to classify; type a sentence")
        names = self.info.label_names
        threshold = self.info.threshold if self.info.threshold is not None else 0.5
        out = []
        for text, p in zip(texts, self.predict_proba(texts), strict=True):
            order = np.argsort(-p)
            if self.info.task == "multi_label":
                labels = [names[i] for i in order if p[i] >= threshold]
            else:
                labels = [names[order[0]]]
            out.append(Prediction(text, names[order[0]], labels, {names[i]: float(p[i]) for i in order}))
        return out
