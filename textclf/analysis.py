"""What a model gets wrong, and how long a study has left: pure functions the dashboard draws from.

``error_rows`` ranks a model's validation predictions the ways an error browser needs (most confidently wrong,
most ambiguous, the rows behind one confusion-matrix cell, one class, a text search); ``remaining_s`` estimates the
time a study still needs from its finished trials, its trial count and its time budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textclf.errors import DataError

KINDS = ("confident_wrong", "ambiguous", "all")


@dataclass(frozen=True)
class ErrorRow:
    index: int  # the row in the validation split
    text: str
    gold: str
    predicted: str
    confidence: float  # the predicted label's probability
    margin: float  # top probability minus the runner-up's


def error_rows(texts: list[str], gold: list[int], probabilities: np.ndarray, label_names: list[str], *,
               kind: str = "confident_wrong", cell: tuple[str | None, str | None] | None = None,
               label: str | None = None, query: str | None = None, limit: int = 50) -> list[ErrorRow]:
    """Single-label validation rows, ranked by ``kind``: ``confident_wrong`` (wrong answers, most confident
    first), ``ambiguous`` (smallest margin between the top two first) or ``all`` (in split order). ``cell``
    (gold, predicted) keeps that confusion-matrix cell (one side None: that whole row or column of the matrix),
    ``label`` rows whose gold or prediction is that class, and ``query`` rows whose text contains it
    (case-insensitive). A label name that is not one of ``label_names`` is a DataError (a ValueError) in one line,
    which the dashboard shows as it is."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    p = np.asarray(probabilities, dtype=float)
    if p.shape != (len(texts), len(label_names)) or len(gold) != len(texts):
        raise ValueError(f"expected {len(texts)} texts, gold labels and rows of {len(label_names)} probabilities, "
                         f"got {len(gold)} labels and shape {p.shape}")
    for side, value in (("true", cell[0] if cell else None), ("predicted", cell[1] if cell else None)):
        if value is not None and value not in label_names:
            raise DataError(f"the {side} label {str(value)[:100]!r} is not one of this study's labels; pick one "
                            "from the list")
    if label is not None and label not in label_names:
        raise DataError(f"label names {str(label)[:100]!r}, which is not one of the labels {label_names[:10]}")
    order, at = np.argsort(-p, axis=1, kind="stable"), np.arange(len(p))  # stable: ties go to the first label
    top = p[at, order[:, 0]]
    second = p[at, order[:, 1]] if p.shape[1] > 1 else np.zeros(len(p))
    rows = [ErrorRow(i, texts[i], label_names[gold[i]], label_names[order[i, 0]], float(top[i]),
                     float(top[i] - second[i])) for i in range(len(texts))]
    needle = query.lower() if query else None
    keep = [r for r in rows
            if (cell is None or (cell[0] in (None, r.gold) and cell[1] in (None, r.predicted)))
            and (label is None or label in (r.gold, r.predicted))
            and (needle is None or needle in r.text.lower())
            and (kind != "confident_wrong" or r.gold != r.predicted)]
    if kind == "confident_wrong":
        keep.sort(key=lambda r: (-r.confidence, r.index))
    elif kind == "ambiguous":
        keep.sort(key=lambda r: (r.margin, r.index))
    return keep[:limit]


def remaining_s(durations_s: list[float], trials_left: int, budget_left_s: float | None = None,
                running_s: float = 0.0) -> float | None:
    """Seconds a study still needs: the median finished trial's duration times the trials left (less what the
    running one has done already), capped by the time budget left. None before any trial has finished, unless the
    budget alone bounds it."""
    if trials_left <= 0:
        return 0.0
    if not durations_s:
        return None if budget_left_s is None else max(0.0, budget_left_s)
    estimate = max(0.0, float(np.median(durations_s)) * trials_left - running_s)
    return estimate if budget_left_s is None else max(0.0, min(estimate, budget_left_s))
