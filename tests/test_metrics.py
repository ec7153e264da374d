from __future__ import annotations

import numpy as np

from textclf.metrics import choose_threshold, compute_metrics, detailed_report, label_matrix


def test_single_label_metrics_match_hand_computation() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = compute_metrics("single_label", [0, 1, 1, 1], probs)
    assert m["accuracy"] == 0.75
    # class 0: p=1/2 r=1 f1=2/3; class 1: p=1 r=2/3 f1=0.8
    assert abs(m["macro_f1"] - (2 / 3 + 0.8) / 2) < 1e-9


def test_multi_label_threshold_is_chosen_on_the_data() -> None:
    y = [[0], [1], [0, 1], []]
    probs = np.array([[0.3, 0.1], [0.1, 0.35], [0.32, 0.4], [0.05, 0.1]])
    t = choose_threshold(label_matrix(y, 2), probs)
    assert 0.1 < t <= 0.3  # 0.5 would predict nothing at all
    m = compute_metrics("multi_label", y, probs)
    assert m["threshold"] == t and m["subset_accuracy"] == 1.0
    assert compute_metrics("multi_label", y, probs, threshold=0.5)["micro_f1"] == 0.0


def test_report_has_per_class_scores_and_confusion_matrix() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    r = detailed_report("single_label", [0, 1, 1], probs, ["neg", "pos"])
    assert r["confusion_matrix"] == [[1, 0], [1, 1]]
    assert r["per_class"]["pos"]["recall"] == 0.5
