"""textclf: fine-tune and compare pretrained transformer text classifiers with Optuna studies.

The public API is re-exported here lazily, so ``import textclf`` stays cheap (no torch until it is needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_data": "textclf.data", "TextData": "textclf.data", "Split": "textclf.data",
    "Backbone": "textclf.backbones", "register_backbone": "textclf.backbones", "resolve_backbone": "textclf.backbones",
    "TrainConfig": "textclf.train", "train": "textclf.train",
    "SearchSpace": "textclf.config", "StudyConfig": "textclf.config", "run_study": "textclf.study",
    "summarize": "textclf.summary", "load_study": "textclf.storage",
    "save_model": "textclf.export", "ModelInfo": "textclf.export",
    "Predictor": "textclf.predict", "Prediction": "textclf.predict",
    "TextclfError": "textclf.errors", "DataError": "textclf.errors", "ConfigError": "textclf.errors",
    "BackboneUnavailable": "textclf.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'textclf' has no attribute {name!r}")
