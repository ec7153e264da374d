"""The traditional reference every study records: TF-IDF features + logistic regression, on the same split."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from textclf.data import TextData
from textclf.metrics import compute_metrics, label_matrix


def tfidf_baseline(data: TextData, metric: str, seed: int = 42) -> dict[str, Any]:
    """Fit on train, score on validation; multi-label uses one-vs-rest with a threshold chosen on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    start = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000)
    x_train = vec.fit_transform(data.train.texts)
    x_val = vec.transform(data.validation.texts)
    lr = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    if data.task == "single_label":
        clf = lr.fit(x_train, data.train.labels)
        # Classes absent from a small train split still need a column, so probabilities are laid out by class id.
        probs_raw = clf.predict_proba(x_val)
        probs = np.zeros((x_val.shape[0], data.num_labels))
        probs[:, clf.classes_] = probs_raw
    else:
        y = label_matrix(data.train.labels, data.num_labels)
        keep = y.sum(axis=0) > 0  # a label that never occurs in train cannot be fitted: it stays at probability 0
        probs = np.zeros((x_val.shape[0], data.num_labels))
        if keep.sum() == 1:
            probs[:, keep] = lr.fit(x_train, y[:, keep].ravel()).predict_proba(x_val)[:, 1:2]
        else:
            probs[:, keep] = OneVsRestClassifier(lr).fit(x_train, y[:, keep]).predict_proba(x_val)
    metrics = compute_metrics(data.task, data.validation.labels, probs, metric=metric)
    return {"model": "tfidf+logreg", "split": "validation", "metric": metric, "value": metrics[metric],
            "metrics": metrics, "time_s": time.perf_counter() - start}
