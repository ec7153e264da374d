"""What each backbone's best model gets wrong and how far its probabilities can be trusted, read from the models a
study kept (their validation probabilities and fitted temperature, stored beside the weights) and the study's
validation split. The dashboard's error browser and reliability diagram draw from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textclf.analysis import ErrorRow, error_rows
from textclf.calibration import ece, rescale
from textclf.errors import TextclfError
from textclf.export import META_FILE, ModelInfo, validation_probs


@dataclass
class KeptModel:
    backbone: str
    info: ModelInfo
    probs: np.ndarray  # on the validation split, before temperature scaling

    @property
    def temperature(self) -> float:
        return float(self.info.temperature or 1.0)

    def served(self) -> np.ndarray:
        """The probabilities the model answers with: scaled by its temperature."""
        return rescale(self.probs, self.temperature) if self.temperature != 1.0 else self.probs


def kept_models(folders: dict[str, Path], texts: list[str], num_labels: int) -> dict[str, KeptModel]:
    """The kept best models among ``folders`` (backbone -> folder) whose stored validation probabilities fit the
    split (``texts``, ``num_labels``); folders without them (older, or multi-label for calibration) are left out."""
    out = {}
    for backbone, folder in folders.items():
        if not (folder / META_FILE).is_file():
            continue
        try:
            info = ModelInfo.load(folder)
        except TextclfError:
            continue  # a folder being replaced by a worker right now: the next refresh reads it
        probs = validation_probs(folder, len(texts), num_labels)
        if probs is not None:
            out[backbone] = KeptModel(backbone, info, probs)
    return out


def calibration_rows(models: dict[str, KeptModel], labels: list[int]) -> list[dict[str, Any]]:
    """Per single-label model: its temperature and validation ECE before and after scaling."""
    y = np.asarray(labels)
    return [{"backbone": b, "temperature": m.temperature, "ece": ece(m.probs, y), "ece_scaled": ece(m.served(), y)}
            for b, m in models.items() if m.info.task != "multi_label"]


def errors(model: KeptModel, texts: list[str], labels: list[int], **filters: Any) -> list[ErrorRow]:
    """:func:`textclf.analysis.error_rows` over ``model``'s validation answers (the served, scaled probabilities)."""
    if model.info.task == "multi_label":
        raise TextclfError("the error browser reads single-label models; a multi-label study shows per-class F1 "
                           "in Compare")
    return error_rows(texts, list(labels), model.served(), model.info.label_names, **filters)
