"""How far a model's probabilities can be trusted: expected calibration error, reliability bins, and temperature
scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T fitted on validation by
minimising the negative log-likelihood of softmax(logits / T). Dividing every logit by the same T > 0 keeps each
row's order, so the predicted labels (and accuracy) do not change; only the confidence does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textclf.metrics import softmax_or_sigmoid

BINS = 15  # equal-width confidence bins, as in Guo et al.
T_RANGE = (0.05, 20.0)  # temperatures searched (log scale)


@dataclass
class Reliability:
    """Per confidence bin: the mean confidence, the accuracy and the number of rows (empty bins dropped)."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap between confidence and accuracy."""
        total = self.count.sum()
        return float((self.count * np.abs(self.confidence - self.accuracy)).sum() / total) if total else 0.0


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Bin single-label predictions by their top probability. ``probabilities``: rows of class probabilities;
    ``labels``: the gold class index of each row."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"expected one row of probabilities per label, got shape {p.shape} for {len(y)} labels")
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)  # (lo, hi]; 0 joins the first bin
    count = np.bincount(which, minlength=bins).astype(float)
    keep = count > 0
    mean_conf = np.bincount(which, weights=conf, minlength=bins)[keep] / count[keep]
    mean_hit = np.bincount(which, weights=hit, minlength=bins)[keep] / count[keep]
    return Reliability(mean_conf, mean_hit, count[keep])


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    return reliability(probabilities, labels, bins).ece


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax_or_sigmoid(np.asarray(logits, dtype=float) / temperature, "single_label")


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels under softmax(logits / temperature)."""
    from scipy.special import log_softmax

    log_p = log_softmax(np.asarray(logits, dtype=float) / temperature, axis=1)
    return float(-log_p[np.arange(len(log_p)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the validation NLL (bounded search over log T; the NLL is convex in 1/T)."""
    from scipy.optimize import minimize_scalar

    if len(logits) == 0:
        raise ValueError("fitting a temperature needs at least one labelled row")
    result = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                             bounds=tuple(np.log(T_RANGE)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Single-label probabilities as if their logits had been divided by ``temperature``. The log of a softmax differs
    from its logits by one constant per row, which the softmax ignores, so the logits themselves are not needed."""
    return softmax(_log(probabilities), temperature)


def _log(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant (zeros clipped to the smallest positive float)."""
    return np.log(np.clip(np.asarray(probabilities, dtype=float), np.finfo(float).tiny, 1.0))


@dataclass
class Calibration:
    """A temperature fitted on validation, and the expected calibration error there before and after it."""

    temperature: float
    ece_before: float
    ece_after: float

    def as_dict(self) -> dict[str, float]:
        return {"temperature": self.temperature, "validation_ece": self.ece_before,
                "validation_ece_scaled": self.ece_after}


def calibrate(probabilities: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit the temperature on a model's validation probabilities (single-label) and measure what it changes."""
    logits = _log(probabilities)  # taken once: the fit and the scaled probabilities both start from it
    t = fit_temperature(logits, labels)
    return Calibration(t, ece(np.asarray(probabilities, dtype=float), labels), ece(softmax(logits, t), labels))
