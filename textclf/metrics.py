"""Scores from scikit-learn, for single-label (softmax) and multi-label (sigmoid + threshold) classification."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


SKEW_RATIO = 3.0  # single-label labels are skewed when the commonest class has this many times the rarest's rows


def default_metric(task: str) -> str:
    return "accuracy" if task == "single_label" else "macro_f1"


def label_skew(task: str, labels: list[Any], label_names: list[str]) -> str | None:
    """Why single-label ``labels`` are skewed (the commonest class has ``SKEW_RATIO`` times the rows of the rarest
    present), or None."""
    if task != "single_label" or not labels:
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(label_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        return None
    top, low = present[counts[present].argmax()], present[counts[present].argmin()]
    if counts[top] < SKEW_RATIO * counts[low]:
        return None
    share = counts / counts.sum()
    return (f"labels are skewed: {label_names[top]!r} has {share[top]:.0%} of the training rows, {label_names[low]!r} "
            f"{share[low]:.0%}")


def choose_metric(task: str, labels: list[Any], label_names: list[str]) -> tuple[str, str]:
    """The metric a study selects on when none is asked for, and why: accuracy for balanced single-label data,
    macro-F1 for skewed labels (where always predicting the commonest class scores a high accuracy) and for
    multi-label."""
    if task != "single_label":
        return "macro_f1", "multi-label: macro-F1 weighs every label alike"
    skew = label_skew(task, labels, label_names)
    if skew:
        return "macro_f1", f"{skew}; accuracy would reward predicting the commonest class, macro-F1 weighs every class alike"
    return "accuracy", "labels are balanced"


def label_matrix(labels: list[list[int]], num_labels: int) -> np.ndarray:
    """Multi-hot matrix of lists of label ids."""
    out = np.zeros((len(labels), num_labels), dtype=np.int64)
    for row, labs in enumerate(labels):
        out[row, labs] = 1
    return out


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        # For a multi-hot matrix accuracy_score is subset accuracy: every label of the row right.
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }


def choose_threshold(y_true: np.ndarray, probs: np.ndarray, metric: str = "macro_f1") -> float:
    """The global decision threshold on the grid that maximises ``metric`` (ties: the one nearest 0.5)."""
    best, best_t = -1.0, 0.5
    for t in sorted(THRESHOLD_GRID, key=lambda x: abs(x - 0.5)):
        value = _scores(y_true, (probs >= t).astype(np.int64))[metric]
        if value > best + 1e-12:
            best, best_t = value, float(t)
    return best_t


THRESHOLD_MODES = ("global", "per_class")


THRESHOLD_RESAMPLES = 100


def _f1_curves(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 of one class at every grid threshold, under each row weighting: an array (weightings, thresholds)."""
    pred = (p[:, None] >= THRESHOLD_GRID[None, :]).astype(np.float64)
    positive = y.astype(np.float64)
    tp = weights @ (pred * positive[:, None])
    fp = weights @ (pred * (1.0 - positive[:, None]))
    fn = (weights @ positive)[:, None] - tp
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)


def _best_on_grid(curves: np.ndarray) -> np.ndarray:
    """Per row of ``curves``, the grid threshold with the highest value (ties: the one nearest 0.5)."""
    tied = curves >= curves.max(axis=1, keepdims=True) - 1e-12
    distance = np.where(tied, np.abs(THRESHOLD_GRID - 0.5)[None, :], np.inf)
    return THRESHOLD_GRID[distance.argmin(axis=1)]


def choose_class_thresholds(y_true: np.ndarray, probs: np.ndarray, *, resamples: int = THRESHOLD_RESAMPLES,
                            seed: int = 0) -> list[float]:
    """One threshold per class (0.5 for a class with no positives): the mean, over ``resamples`` bootstrap
    resamples of the rows, of the grid threshold that maximises that class's F1 on the resample.

    Why bagged: a rare class has a handful of validation positives, and the one cut that is best on exactly those
    rows is mostly their noise; averaging the best cut over resamples is steadier on unseen rows (on GoEmotions'
    28 labels, test macro-F1 +0.005 to +0.015 over the plain argmax with thresholds chosen on validation;
    docs/benchmarks.md). ``resamples=0`` gives the plain argmax on ``y_true`` itself. Deterministic for a ``seed``.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"resamples must be a whole number >= 0, got {resamples!r}")
    n = len(y_true)
    rng = np.random.default_rng(seed)
    weights = (rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64) if resamples and n
               else np.ones((1, n)))
    out = []
    for c in range(probs.shape[1]):
        if y_true[:, c].sum() == 0:
            out.append(0.5)
            continue
        has_positives = weights @ y_true[:, c] > 0  # a resample without this class's positives says nothing of it
        kept = weights[has_positives] if has_positives.any() else np.ones((1, n))
        curves = _f1_curves(y_true[:, c], probs[:, c], kept)
        out.append(round(float(_best_on_grid(curves).mean()), 4))
    return out


def compute_metrics(task: str, labels: list[Any], probs: np.ndarray, *, threshold: float | list[float] | None = None,
                    metric: str = "macro_f1", threshold_mode: str = "global") -> dict[str, Any]:
    """Accuracy, macro-F1 and micro-F1; for multi-label also the threshold(s) used: chosen here on these labels when
    not given (one global threshold, or one per class with ``threshold_mode="per_class"``)."""
    if task == "single_label":
        return _scores(np.asarray(labels), probs.argmax(axis=1))
    y_true = label_matrix(labels, probs.shape[1])
    if threshold is None:
        threshold = (choose_class_thresholds(y_true, probs) if threshold_mode == "per_class"
                     else choose_threshold(y_true, probs, metric))
    out: dict[str, Any] = _scores(y_true, (probs >= np.asarray(threshold)).astype(np.int64))
    out["subset_accuracy"] = out["accuracy"]
    out["threshold"] = threshold
    return out


def detailed_report(task: str, labels: list[Any], probs: np.ndarray, label_names: list[str],
                    threshold: float | list[float] = 0.5) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, and the confusion matrix for single-label."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    n = len(label_names)
    if task == "single_label":
        y_true, y_pred = np.asarray(labels), probs.argmax(axis=1)
    else:
        y_true, y_pred = label_matrix(labels, n), (probs >= np.asarray(threshold)).astype(np.int64)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=None if task != "single_label" else list(range(n)),
                                                 zero_division=0)
    report: dict[str, Any] = {
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(label_names)},
    }
    if task == "single_label":
        report["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=list(range(n))).tolist()
    return report


def softmax_or_sigmoid(logits: np.ndarray, task: str) -> np.ndarray:
    logits = logits.astype(np.float64)
    if task == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


COLLAPSE_SHARE = 0.95  # a model that gives one answer to this share of the rows has collapsed onto it...
COLLAPSE_MARGIN = 0.05  # ...unless that answer is right about as often (its true share is within this margin)


def concentration(task: str, labels: list[Any], probs: np.ndarray, threshold: float | list[float] = 0.5,
                  label_names: list[str] | None = None) -> dict[str, Any]:
    """How concentrated a model's predictions are: its most frequent answer (a class, or for multi-label a set of
    labels), the share of rows that get it and the share that truly have it, and whether the model has collapsed
    onto it (``COLLAPSE_SHARE`` of the rows or more, ``COLLAPSE_MARGIN`` above its true share)."""
    if not len(labels):
        return {"answer": None, "share": 0.0, "true_share": 0.0, "collapsed": False}
    if task == "single_label":
        predicted = [int(i) for i in probs.argmax(axis=1)]
        truth = [int(y) for y in labels]
    else:
        predicted = [tuple(int(i) for i in np.flatnonzero(row >= np.asarray(threshold))) for row in probs]
        truth = [tuple(sorted(int(i) for i in y)) for y in labels]
    top, count = Counter(predicted).most_common(1)[0]
    share = float(count / len(predicted))
    true_share = float(sum(t == top for t in truth) / len(truth))
    names = label_names or []

    def name(i: int) -> str:
        return names[i] if i < len(names) else str(i)

    answer = name(top) if isinstance(top, int) else "{" + ", ".join(name(int(i)) for i in top) + "}"
    return {"answer": answer, "share": share, "true_share": true_share,
            "collapsed": share >= COLLAPSE_SHARE and share - true_share >= COLLAPSE_MARGIN}
