"""The references a study measures itself against: TF-IDF features + logistic regression (recorded with every
study), and chance (the training priors, which the pruner uses)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from textclf.data import TextData
from textclf.metrics import compute_metrics, label_matrix


def tfidf_baseline(data: TextData, metric: str, seed: int = 42, threshold_mode: str = "global") -> dict[str, Any]:
    """Fit on train, score on validation (and on test, if there is one: nothing is selected on it); multi-label uses
    one-vs-rest with thresholds chosen on validation the way the study chooses its own (``threshold_mode``), so the
    comparison is like for like."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    start = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000)
    x_train = vec.fit_transform(data.train.texts)
    lr = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    if data.task == "single_label":
        clf = lr.fit(x_train, data.train.labels)

        def proba(texts: list[str]) -> np.ndarray:
            # Classes absent from a small train split still need a column: probabilities are laid out by class id.
            out = np.zeros((len(texts), data.num_labels))
            out[:, clf.classes_] = clf.predict_proba(vec.transform(texts))
            return out
    else:
        y = label_matrix(data.train.labels, data.num_labels)
        keep = y.sum(axis=0) > 0  # a label that never occurs in train cannot be fitted: it stays at probability 0
        model = (lr.fit(x_train, y[:, keep].ravel()) if keep.sum() == 1
                 else OneVsRestClassifier(lr).fit(x_train, y[:, keep]))

        def proba(texts: list[str]) -> np.ndarray:
            out = np.zeros((len(texts), data.num_labels))
            p = model.predict_proba(vec.transform(texts))
            out[:, keep] = p[:, 1:2] if keep.sum() == 1 else p
            return out

    metrics = compute_metrics(data.task, data.validation.labels, proba(data.validation.texts), metric=metric,
                              threshold_mode=threshold_mode)
    result: dict[str, Any] = {"model": "tfidf+logreg", "split": "validation", "metric": metric,
                              "value": metrics[metric], "metrics": metrics}
    if data.test is not None:
        test = compute_metrics(data.task, data.test.labels, proba(data.test.texts), threshold=metrics.get("threshold"),
                               metric=metric)
        result["test_value"], result["test_metrics"] = test[metric], test
    result["time_s"] = time.perf_counter() - start
    return result


def chance_score(data: TextData, metric: str, threshold_mode: str | None = "global") -> float:
    """``metric`` on validation of a model that knows only the training labels' frequencies: the majority class
    for single-label accuracy, each label's frequency as its probability (thresholds chosen as the study's are) for
    multi-label."""
    if data.task == "single_label":
        prior = np.bincount(np.asarray(data.train.labels, dtype=np.int64), minlength=data.num_labels).astype(float)
    else:
        prior = label_matrix(data.train.labels, data.num_labels).sum(axis=0).astype(float)
    prior /= max(len(data.train), 1)
    probs = np.tile(prior, (len(data.validation), 1))
    return float(compute_metrics(data.task, data.validation.labels, probs, metric=metric,
                                 threshold_mode=threshold_mode or "global")[metric])
