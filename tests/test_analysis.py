"""The error browser's ranking and the study ETA."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.analysis import error_rows, remaining_s

NAMES = ["praise", "complaint", "question"]
TEXTS = ["great", "broke fast", "is it big?", "awful", "love it", "where is it?"]
GOLD = [0, 1, 2, 1, 0, 2]
P = np.array([[0.9, 0.05, 0.05],   # right, sure
              [0.7, 0.2, 0.1],     # wrong (complaint -> praise), confident
              [0.1, 0.45, 0.45],   # wrong by a hair? argmax ties go to the first: complaint
              [0.2, 0.6, 0.2],     # right
              [0.34, 0.33, 0.33],  # right, barely
              [0.05, 0.9, 0.05]])  # wrong (question -> complaint), most confident


def test_confidently_wrong_first_then_ambiguous() -> None:
    wrong = error_rows(TEXTS, GOLD, P, NAMES)
    assert [r.index for r in wrong] == [5, 1, 2]
    assert (wrong[0].gold, wrong[0].predicted, wrong[0].confidence) == ("question", "complaint", 0.9)
    ambiguous = error_rows(TEXTS, GOLD, P, NAMES, kind="ambiguous", limit=2)
    assert [r.index for r in ambiguous] == [2, 4] and ambiguous[0].margin == pytest.approx(0.0)


def test_filters_by_cell_label_and_text() -> None:
    assert [r.index for r in error_rows(TEXTS, GOLD, P, NAMES, kind="all", cell=("complaint", "praise"))] == [1]
    assert [r.index for r in error_rows(TEXTS, GOLD, P, NAMES, kind="all", label="praise")] == [0, 1, 4]
    assert [r.index for r in error_rows(TEXTS, GOLD, P, NAMES, kind="all", query="WHERE")] == [5]
    with pytest.raises(ValueError, match="'nope', which is not one of the labels"):
        error_rows(TEXTS, GOLD, P, NAMES, label="nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        error_rows(TEXTS, GOLD, P, NAMES, kind="worst")
    with pytest.raises(ValueError, match="expected 6 texts"):
        error_rows(TEXTS, GOLD[:5], P, NAMES)


def test_remaining_time() -> None:
    assert remaining_s([10.0, 30.0, 20.0], trials_left=3) == 60.0  # median 20 s x 3
    assert remaining_s([10.0, 30.0, 20.0], trials_left=3, running_s=15.0) == 45.0
    assert remaining_s([10.0, 30.0, 20.0], trials_left=3, budget_left_s=25.0) == 25.0  # the budget ends it first
    assert remaining_s([], trials_left=3) is None and remaining_s([], 3, budget_left_s=100.0) == 100.0
    assert remaining_s([5.0], trials_left=0) == 0.0
