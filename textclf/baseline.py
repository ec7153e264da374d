"""The references a study measures itself against: three traditional classifiers on TF-IDF features (logistic
regression, a linear SVM, complement naive Bayes; each tuned lightly on validation, the best is the study's
baseline), the majority class, and chance (the training priors, which the pruner uses)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from textclf.data import TextData
from textclf.metrics import compute_metrics, label_matrix

# Each baseline's light tuning: the values tried, the one best on validation kept. Complement naive Bayes is the
# naive Bayes meant for skewed text classes (Rennie et al. 2003).
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "tfidf+logreg": ("C", (1.0, 10.0, 100.0)),
    "tfidf+linear_svm": ("C", (0.1, 1.0, 10.0)),
    "tfidf+complement_nb": ("alpha", (0.1, 0.3, 1.0)),
}

Scorer = Callable[[list[str]], np.ndarray]

# Multi-label baselines fit one binary model per label, independent of each other: spread over a few cores (they run
# before any trial, so nothing else is using them; capped so a big machine does not copy the features many times).
OVR_JOBS = min(4, os.cpu_count() or 1)


def _estimator(name: str, value: float, seed: int, binary: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import ComplementNB
    from sklearn.svm import LinearSVC

    if name == "tfidf+logreg":
        # liblinear is the faster solver for one binary problem on sparse TF-IDF (on GoEmotions' 28 labels 14 s
        # against lbfgs's 42 s at C=10, and a higher validation macro-F1); lbfgs keeps the multinomial loss.
        if binary:
            return LogisticRegression(C=value, solver="liblinear", random_state=seed)
        return LogisticRegression(C=value, max_iter=2000, random_state=seed)
    if name == "tfidf+linear_svm":
        return LinearSVC(C=value, random_state=seed)
    return ComplementNB(alpha=value)


def _scores(model: Any, x: Any) -> np.ndarray:
    """Scores in [0, 1] whose order is the model's: probabilities, or a squashed SVM margin (multi-label thresholds
    are then chosen on them like the study's)."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)
    margin = model.decision_function(x)
    return 1.0 / (1.0 + np.exp(-margin))


def _fit(name: str, value: float, data: TextData, x_train: Any, vec: Any, seed: int) -> Scorer:
    """A fitted scorer: per row, one score per label id (labels absent from train scored 0)."""
    from sklearn.multiclass import OneVsRestClassifier

    n = data.num_labels
    if data.task == "single_label":
        clf = _estimator(name, value, seed).fit(x_train, data.train.labels)

        def single(texts: list[str]) -> np.ndarray:
            out = np.zeros((len(texts), n))
            scores = _scores(clf, vec.transform(texts))
            if scores.ndim == 1:  # a two-class SVM gives one margin: the second class's
                scores = np.stack([1 - scores, scores], axis=1)
            out[:, clf.classes_] = scores
            return out

        return single
    y = label_matrix(data.train.labels, n)
    counts = y.sum(axis=0)
    fitted = np.flatnonzero((counts > 0) & (counts < len(y)))  # a label always or never present cannot be fitted
    if len(fitted) == 1:
        model: Any = _estimator(name, value, seed, binary=True).fit(x_train, y[:, fitted[0]])
    elif len(fitted) > 1:
        model = OneVsRestClassifier(_estimator(name, value, seed, binary=True), n_jobs=OVR_JOBS).fit(
            x_train, y[:, fitted])

    def multi(texts: list[str]) -> np.ndarray:
        out = np.tile((counts == len(y)).astype(float), (len(texts), 1))  # a label on every training row: always
        if len(fitted):
            scores = _scores(model, vec.transform(texts))
            if len(fitted) == 1:  # one binary model: the positive class's score
                scores = scores[:, 1:2] if scores.ndim == 2 else scores[:, None]
            out[:, fitted] = scores
        return out

    return multi


def _evaluate(data: TextData, scorer: Scorer, metric: str, threshold_mode: str) -> dict[str, Any]:
    """Validation metrics (thresholds chosen there), and test metrics at those thresholds if there is a test split."""
    val = compute_metrics(data.task, data.validation.labels, scorer(data.validation.texts), metric=metric,
                          threshold_mode=threshold_mode)
    out: dict[str, Any] = {"value": val[metric], "metrics": val}
    if data.test is not None:
        test = compute_metrics(data.task, data.test.labels, scorer(data.test.texts), threshold=val.get("threshold"),
                               metric=metric)
        out["test_value"], out["test_metrics"] = test[metric], test
    return out


def traditional_baselines(data: TextData, metric: str, seed: int = 42, threshold_mode: str = "global"
                          ) -> dict[str, Any]:
    """Fit each baseline on train with each value of its grid, keep the value best on validation, and score it on
    test if there is one (nothing is selected on test). Multi-label uses one-vs-rest, thresholds chosen on validation
    as the study chooses its own (``threshold_mode``), so the comparison is like for like.

    Returns the best baseline's record (``model``, ``value``, ``metrics``, ``test_value``, ...) with ``baselines``:
    every one's, by name."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    start = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000)
    x_train = vec.fit_transform(data.train.texts)
    x_train.sort_indices()  # in place, once: the one-vs-rest workers get a read-only copy they cannot sort
    every: dict[str, dict[str, Any]] = {}
    for name, (param, values) in GRIDS.items():
        tried = []
        for value in values:
            scorer = _fit(name, value, data, x_train, vec, seed)
            val = compute_metrics(data.task, data.validation.labels, scorer(data.validation.texts), metric=metric,
                                  threshold_mode=threshold_mode)
            tried.append((val[metric], -abs(np.log10(value)), value, scorer))  # ties: the value nearest 1
        _, _, value, scorer = max(tried, key=lambda t: t[:3])
        every[name] = {"model": name, "params": {param: value}, **_evaluate(data, scorer, metric, threshold_mode)}
    best = max(every.values(), key=lambda r: r["value"])
    summary = {name: {k: r[k] for k in ("value", "test_value", "params") if k in r} for name, r in every.items()}
    return {**best, "split": "validation", "metric": metric, "baselines": summary,
            "time_s": time.perf_counter() - start}


def majority_baseline(data: TextData, metric: str, threshold_mode: str | None = "global") -> dict[str, Any]:
    """Predicting the training split's most common class for every row (multi-label: each label's training frequency
    as its score, thresholds chosen on validation): what a collapsed model scores."""
    return {"model": "majority", "split": "validation", "metric": metric,
            **_evaluate(data, _prior_scorer(data), metric, threshold_mode or "global")}


def _prior_scorer(data: TextData) -> Scorer:
    if data.task == "single_label":
        prior = np.bincount(np.asarray(data.train.labels, dtype=np.int64), minlength=data.num_labels).astype(float)
    else:
        prior = label_matrix(data.train.labels, data.num_labels).sum(axis=0).astype(float)
    prior /= max(len(data.train), 1)
    return lambda texts: np.tile(prior, (len(texts), 1))


def chance_score(data: TextData, metric: str, threshold_mode: str | None = "global") -> float:
    """``metric`` on validation of a model that knows only the training labels' frequencies: the majority class
    for single-label accuracy, each label's frequency as its probability (thresholds chosen as the study's are) for
    multi-label."""
    probs = _prior_scorer(data)(data.validation.texts)  # validation only: the pruner needs no test score
    return float(compute_metrics(data.task, data.validation.labels, probs, metric=metric,
                                 threshold_mode=threshold_mode or "global")[metric])
