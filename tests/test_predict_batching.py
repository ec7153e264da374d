"""Concurrent single-text predictions answered in shared batches (the REST endpoint's path)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from textclf.errors import DataError
from textclf.predict import Predictor, _Coalescer


class _SlowUpper:
    """A stand-in model: upper-cases texts, records each batch, and holds the first one until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.release.wait(5)
        if "boom" in texts:
            raise RuntimeError("model failed")
        return [t.upper() for t in texts]


def test_requests_waiting_behind_a_batch_are_answered_together_in_order() -> None:
    model = _SlowUpper()
    batcher = _Coalescer(model, max_batch=4)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, "first")
        while not model.batches:  # the worker is busy with "first"
            time.sleep(0.001)
        rest = [pool.submit(batcher.submit, f"t{i}") for i in range(7)]
        while batcher._queue.qsize() < 7:
            time.sleep(0.001)
        model.release.set()
        assert first.result(5) == "FIRST"
        assert [f.result(5) for f in rest] == [f"T{i}" for i in range(7)]  # each caller gets its own answer
    assert model.batches[0] == ["first"]
    assert sorted(len(b) for b in model.batches[1:]) == [3, 4]  # 7 waiting texts, at most 4 a batch: 2 passes
    assert sorted(t for b in model.batches[1:] for t in b) == sorted(f"t{i}" for i in range(7))


def test_a_failing_batch_fails_its_callers_and_the_worker_serves_on() -> None:
    model = _SlowUpper()
    model.release.set()
    batcher = _Coalescer(model)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit("boom")
    assert batcher.submit("fine") == "FINE"


def test_an_idle_worker_exits_and_a_new_request_starts_another() -> None:
    model = _SlowUpper()
    model.release.set()
    batcher = _Coalescer(model, idle_s=0.05)
    assert batcher.submit("a") == "A"
    worker = batcher._worker
    assert worker is not None
    worker.join(2)
    assert not worker.is_alive() and batcher._worker is None
    assert batcher.submit("b") == "B"


def test_predict_one_matches_predict_from_many_threads(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory
                                                       ) -> None:
    from textclf.study import SearchSpace, StudyConfig, best_model_dir, load_study, run_study

    folder = tmp_path_factory.mktemp("batching")
    storage = f"sqlite:///{folder / 'p.db'}"
    run_study(StudyConfig(study="p", data="demo", backbones=["tiny-bert"], trials=1, epochs=1, storage=storage,
                          models_dir=str(folder / "models"), space=SearchSpace(lr=(1e-3, 1e-3), batch_sizes=(16,))),
              progress=False, log=lambda _: None)
    predictor = Predictor.from_dir(best_model_dir(load_study("p", storage)), precision="fp32")
    texts = ["Is it waterproof?", "It broke after a day", "Love it", "Where is my refund", "great value"] * 3
    expected = predictor.predict(texts)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(predictor.predict_one, texts))
    assert [g.label for g in got] == [e.label for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.text == e.text and g.probabilities == pytest.approx(e.probabilities, abs=1e-5)
    with pytest.raises(DataError, match="text 1 is empty"):
        predictor.predict_one("  ")
