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
    by_gold = error_rows(TEXTS, GOLD, P, NAMES, kind="all", cell=("complaint", None))
    assert by_gold and {r.gold for r in by_gold} == {"complaint"} and [r.index for r in by_gold] == sorted(
        i for i, g in enumerate(GOLD) if NAMES[g] == "complaint")
    by_pred = error_rows(TEXTS, GOLD, P, NAMES, kind="all", cell=(None, "praise"))
    assert by_pred and {r.predicted for r in by_pred} == {"praise"}
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


def test_the_overview_of_a_running_then_ended_study() -> None:
    from textclf.safety import md
    from textclf.storage import StudyRecord, TrialRecord
    from textclf.summary import study_overview

    t0 = 1_000_000.0
    trials = [TrialRecord(0, "COMPLETE", 0.81, "minilm", {}, duration_s=100.0, started=t0),
              TrialRecord(1, "PRUNED", 0.60, "scratch:minilm", {}, duration_s=20.0, started=t0 + 100),
              TrialRecord(2, "COMPLETE", 0.62, "scratch:minilm", {}, duration_s=60.0, started=t0 + 120),
              TrialRecord(3, "RUNNING", None, "minilm", {}, started=t0 + 180)]
    setup = {"runs": [{"trials": 6, "started": t0, "timeout": None}],
             "baseline": {"model": "tfidf+logreg", "value": 0.7, "test_value": 0.69,
                          "baselines": {"tfidf+logreg": {"value": 0.7}, "tfidf+complement_nb": {"value": 0.65}}},
             "majority": {"value": 0.5},
             "test": {"trial": 0, "backbone": "minilm", "metric": "accuracy", "value": 0.8,
                      "calibration": {"temperature": 1.5, "ece": 0.08, "ece_scaled": 0.02}}}
    record = StudyRecord("s", "accuracy", "single_label", ["a", "b"], 0.7, trials, setup)
    running = study_overview(record, running=True, now=t0 + 200)
    # Names are escaped for Markdown (md): "scratch\\:minilm", "tfidf\\+logreg".
    assert running[0] == f"Best accuracy on validation: **minilm** 0.8100 ← chosen · **{md('scratch:minilm')}** 0.6200"
    assert running[1] == (f"Baselines: {md('tfidf+logreg')} 0.7000 · {md('tfidf+complement_nb')} 0.6500 · majority "
                          "class 0.5000")
    # 3 finished of 6: 3 left at the median 60 s, less the 20 s the running one has done.
    assert running[2] == "Trials: 2 complete, 1 pruned, 0 failed; running for 3.3 min, about 2.7 min left"
    assert not any(line.startswith("Test split") for line in running)  # the test score waits for the end
    ended = study_overview(record, running=False, now=t0 + 900)
    assert ended[2] == "Trials: 2 complete, 1 pruned, 0 failed; 3.0 min of training in all"
    assert ended[3] == (f"Test split (the chosen model, trial 0 minilm, scored once): accuracy 0.8000; {md('tfidf+logreg')} "
                        "on test 0.6900; expected calibration error 0.0800 → 0.0200 with temperature 1.50")
