"""Calibration arithmetic: ECE on known cases, the reliability bins, and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.calibration import calibrate, ece, fit_temperature, nll, reliability, rescale, softmax


def test_ece_of_known_cases() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert ece(perfect, labels) == 0.0
    # All at confidence 0.9, half right: a gap of 0.4 everywhere.
    overconfident = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]])
    assert ece(overconfident, labels) == pytest.approx(0.4)
    # Two bins: confidence 0.6 all right (gap 0.4), confidence 1.0 all right (gap 0): weighted 0.5 * 0.4.
    mixed = np.array([[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.0, 1.0]])
    assert ece(mixed, labels) == pytest.approx(0.2)
    bins = reliability(mixed, labels)
    assert bins.count.tolist() == [2.0, 2.0] and bins.accuracy.tolist() == [1.0, 1.0]
    assert bins.confidence.tolist() == pytest.approx([0.6, 1.0])


def test_reliability_refuses_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="one row of probabilities per label"):
        reliability(np.ones((3, 2)) / 2, np.array([0, 1]))


def test_temperature_scaling_fixes_an_overconfident_toy_and_keeps_its_labels() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1.5, (6000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(base)])  # base is calibrated by construction
    logits = 4.0 * base  # the same ranking, 4x too sharp: overconfident
    t = fit_temperature(logits, labels)
    assert 3.0 < t < 5.0  # recovers the sharpening
    assert nll(logits, labels, t) < nll(logits, labels)
    before, after = ece(softmax(logits), labels), ece(softmax(logits, t), labels)
    assert before > 0.15 and after < 0.03
    np.testing.assert_array_equal(softmax(logits, t).argmax(1), softmax(logits).argmax(1))  # same predictions


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (5000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits)])  # labels drawn from the model's own belief
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


def test_rescaling_probabilities_equals_scaling_their_logits() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (200, 5))
    for t in (0.5, 1.0, 2.5):
        np.testing.assert_allclose(rescale(softmax(logits), t), softmax(logits, t), atol=1e-9)
    np.testing.assert_allclose(rescale(rescale(softmax(logits), 2.0), 0.5), softmax(logits), atol=1e-9)  # undone


def test_calibrate_reports_the_fitted_temperature_and_both_eces() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1.5, (4000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(base)])
    cal = calibrate(softmax(3.0 * base), labels)
    assert 2.5 < cal.temperature < 3.5 and cal.ece_before > 0.1 and cal.ece_after < 0.03
    assert cal.as_dict() == {"temperature": cal.temperature, "validation_ece": cal.ece_before,
                             "validation_ece_scaled": cal.ece_after}
