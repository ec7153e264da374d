"""Prediction with a saved textclf model folder."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textclf.errors import DataError, TextclfError
from textclf.export import ModelInfo
from textclf.metrics import softmax_or_sigmoid
from textclf.onnx_export import ONNX_FILE, OnnxClassifier, is_onnx_folder

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    text: str
    label: str                       # the most probable label
    labels: list[str]                # single-label: [label]; multi-label: every label at or above the threshold
    probabilities: dict[str, float]  # per label, sorted from most to least probable

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "labels": self.labels, "probabilities": self.probabilities}


# A bf16 answer whose top two probabilities (or a probability and the multi-label threshold) are closer than this
# is recomputed in fp32, so the fast path never changes a decision that bf16 rounding could flip.
CLOSE_CALL = 0.05


class _Coalescer:
    """Serves single-text requests from many threads in batches: one worker thread takes whatever requests are
    waiting (up to ``max_batch``) and answers them with one forward pass. On 2 cores, 8 concurrent HTTP clients asking
    one text each were bound by one-at-a-time forward passes; a batch of 8 costs far less than 8 batches of 1. The
    worker exits after ``idle_s`` without requests, so an evicted model leaves no thread behind."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch: int = 16, idle_s: float = 30.0) -> None:
        self._predict, self.max_batch, self.idle_s = predict, max_batch, idle_s
        self._queue: queue.Queue[tuple[str, Future]] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def submit(self, text: str) -> Any:
        """``predict([text])[0]``, computed with whatever other texts are waiting."""
        future: Future = Future()
        self._queue.put((text, future))
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="textclf-batcher", daemon=True)
                self._worker.start()
        return future.result()

    def _serve(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=self.idle_s)]
            except queue.Empty:
                with self._lock:  # a request put after the timeout but before this check still gets a worker
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                predictions = self._predict([text for text, _ in batch])
            except BaseException as exc:  # every waiting caller gets the error; the worker serves on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), prediction in zip(batch, predictions, strict=True):
                future.set_result(prediction)


class Predictor:
    """Loads a folder written by :func:`textclf.export.save_model` and classifies texts.

    With ``precision="auto"`` on a CPU with native bf16, predictions run on a bf16 copy of the model (about 2x
    faster at batch 1) and any close call is recomputed in fp32: the decisions are the fp32 model's.

    ``compile=True`` (long-lived processes such as the app) also compiles that bf16 copy with ``torch.compile`` in a
    background thread (~20 s of CPU once) and answers with it once ready: most of a batch-1 prediction is Python
    overhead, which the compiled graph drops (measured: p50 6.8 -> 5.0 ms). Until then, or if compiling fails, the
    eager bf16 copy answers; :attr:`compile_error` says why."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, max_length: int | None = None,
                 precision: str = "auto", compile: bool = False) -> None:
        from textclf.train import bf16_supported, tune_runtime

        tune_runtime()  # before this process's first matmul, where oneDNN sizes its kernel cache
        self.model, self.tokenizer, self.info = model, tokenizer, info
        # Texts are cut as in training (older folders, which did not record it: at 512 tokens, from the start).
        wanted = max_length or info.max_length or 512
        self.max_length = min(wanted, int(getattr(tokenizer, "model_max_length", wanted) or wanted))
        self.truncation = info.truncation
        # One global threshold or one per class, as one value per label (0.5 where the folder has none).
        t = info.threshold if info.threshold is not None else 0.5
        self.thresholds = np.broadcast_to(np.asarray(t, dtype=float), (len(info.label_names),))
        # Temperature scaling (single-label): confidence the validation split vouches for; the labels are unchanged.
        self.temperature = float(info.temperature) if info.temperature and info.task != "multi_label" else 1.0
        self.fast = None
        onnx = isinstance(model, OnnxClassifier)  # ONNX Runtime runs the graph as exported
        on_cpu = onnx or next(model.parameters()).device.type == "cpu"
        if not onnx and (precision == "bf16" or (precision == "auto" and on_cpu and bf16_supported("cpu"))):
            import copy

            import torch

            self.fast = copy.deepcopy(model).to(torch.bfloat16).eval()
            fuse_attention_projections(self.fast)
        self.compiled: Any = None
        self.compile_error: str | None = None
        self._compiled_lock = threading.Lock()  # compiled graphs are called one at a time: recompiles are not thread-safe
        self._compile_done = threading.Event()
        if compile and self.fast is not None:
            threading.Thread(target=self._compile, name="textclf-compile", daemon=True).start()
        else:
            self._compile_done.set()
        self._coalescer = _Coalescer(self.predict)

    def _compile(self) -> None:
        import torch

        try:
            compiled = torch.compile(self.fast, dynamic=True)
            # Warm the shapes the live box and the API send: one text, and a padded batch (batch size 1 is a
            # specialised shape of its own).
            with torch.inference_mode():
                for texts in (["warm up"], ["warm up", "a second, longer text to pad the first one against"]):
                    compiled(**self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                              return_tensors="pt"))
        except Exception as exc:  # no C++ compiler, an unsupported op...: the eager copy still answers
            self.compile_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("textclf: predictions stay eager, compiling the model failed: %s", self.compile_error)
        else:
            self.compiled = compiled
        finally:
            self._compile_done.set()

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Block until background compiling has ended (or ``timeout`` s); True when the compiled graph answers."""
        self._compile_done.wait(timeout)
        return self.compiled is not None

    @classmethod
    def from_dir(cls, folder: str | Path, *, attn_implementation: str | None = None, precision: str = "auto",
                 compile: bool = False) -> Predictor:
        from textclf.backbones import padding_side_for, quiet_transformers

        transformers = quiet_transformers()
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise TextclfError(f"model folder {str(folder)!r} does not exist; pass a folder written by export")
        info = ModelInfo.load(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        if is_onnx_folder(folder):  # exported with --format onnx: the same tokenizer and labels, ONNX Runtime runs it
            return cls(OnnxClassifier(folder / ONNX_FILE), tok, info, precision="fp32")
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=True, **kwargs)
        if "padding_side" not in tok.init_kwargs:
            # Folders saved before the padding side was written down: XLNet must still pad on the left.
            tok.padding_side = padding_side_for(str(model.config.model_type))
        model.eval()
        return cls(model, tok, info, precision=precision, compile=compile)

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities per label, in the order of ``texts``. Many texts are tokenised once and batched by length,
        so a batch pads to its own longest text rather than to the longest of a random mix."""
        if not texts:
            return np.zeros((0, len(self.info.label_names)), dtype=np.float32)
        from textclf.train import tokenize

        texts = [self._ends(t) for t in texts]
        if len(texts) <= batch_size and self.truncation == "head":  # the live box's path: one call, nothing to sort
            return self._proba(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                              return_tensors="pt"))
        enc = tokenize(self.tokenizer, texts, self.max_length, self.truncation)
        order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
        out = np.zeros((len(texts), len(self.info.label_names)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = self.tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="pt")
            out[idx] = self._proba(batch)
        return out

    def _ends(self, text: str) -> str:
        """What of ``text`` holds every token the model reads, cut before tokenising: a 5 MB text took seconds to
        tokenise in full for 512 tokens kept. Head truncation keeps the start; head+tail truncation the start and
        the end, joined by a space. Cuts fall on white space, where every tokenizer here splits, and are kept only
        once each part yields at least ``max_length`` tokens, so truncation gives the same ids."""
        head = self._head(text)
        if self.truncation == "head" or head is text:
            return head
        tail = self._head(text[::-1], reverse=True)[::-1]
        return head + " " + tail

    def _head(self, text: str, reverse: bool = False) -> str:
        """The start of ``text`` that yields at least ``max_length`` tokens (``reverse``: ``text`` is reversed, and
        what is counted is the reversed cut, the end of the original text)."""
        cut = self.max_length * 16
        while len(text) > cut:
            end = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))
            if end <= 0:
                return text  # no white space to cut at: tokenise it whole
            part = text[:end][::-1] if reverse else text[:end]
            if len(self.tokenizer(part, add_special_tokens=False)["input_ids"]) >= self.max_length:
                return text[:end]
            cut *= 4
        return text

    def _proba(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            compiled = self.compiled
            if compiled is not None:
                with self._compiled_lock:
                    logits = compiled(**batch).logits
            else:
                logits = (self.fast or self.model)(**batch).logits
            p = self._probabilities(logits.float().numpy())
            close = self._close_calls(p) if self.fast is not None else []
            if len(close):
                exact = self.model(**{k: v[close] for k, v in batch.items()}).logits.float().numpy()
                p[close] = self._probabilities(exact)
        return p

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax (single-label, over the logits divided by the model's fitted temperature) or sigmoid."""
        return softmax_or_sigmoid(logits / self.temperature if self.temperature != 1.0 else logits, self.info.task)

    def _close_calls(self, p: np.ndarray) -> np.ndarray:
        if self.info.task == "multi_label":
            return np.flatnonzero((np.abs(p - self.thresholds) < CLOSE_CALL).any(axis=1))
        if p.shape[1] < 2:
            return np.zeros(0, dtype=int)
        top2 = np.sort(p, axis=1)[:, -2:]
        return np.flatnonzero(top2[:, 1] - top2[:, 0] < CLOSE_CALL)

    def predict_one(self, text: str) -> Prediction:
        """``predict(text)[0]``, for servers: calls from concurrent threads are answered together, in one batch."""
        _check_texts([text])  # a bad text fails its own request, not the batch it would have joined
        return self._coalescer.submit(text)

    def predict(self, texts: str | list[str]) -> list[Prediction]:
        if isinstance(texts, str):
            texts = [texts]
        _check_texts(texts)
        names = self.info.label_names
        out = []
        for text, p in zip(texts, self.predict_proba(texts), strict=True):
            order = np.argsort(-p)
            if self.info.task == "multi_label":
                labels = [names[i] for i in order if p[i] >= self.thresholds[i]]
            else:
                labels = [names[order[0]]]
            out.append(Prediction(text, names[order[0]], labels, {names[i]: float(p[i]) for i in order}))
        return out


def fuse_attention_projections(model: Any) -> int:
    """For inference only: give each plain BERT-style self-attention of ``model`` its query, key and value weights as
    one matrix and a forward that makes one matmul of the three. A batch-1 forward is mostly the fixed cost of each
    matmul call (oneDNN's AMX path: ~50-60 us a call, whatever its size), so 3 calls become 1 in every layer
    (a compiled one-text ``predict`` of MiniLM: 0.86-0.91x the time). The original projections stay, for training
    mode. The fused forward is checked against the model's own on first use and not used where they differ.
    Returns how many modules were changed."""
    import types

    import torch

    from textclf.cpu_train import fusable, plain_attention
    from textclf.patch_check import BF16_RTOL, RTOL, difference, model_kind, probe_batch, verified

    if not plain_attention(model):
        return 0
    modules = [m for m in model.modules() if fusable(m)]
    for module in modules:
        projections = (module.query, module.key, module.value)
        module.register_buffer("qkv_weight", torch.cat([p.weight.detach() for p in projections]), persistent=False)
        bias = None if module.query.bias is None else torch.cat([p.bias.detach() for p in projections])
        module.register_buffer("qkv_bias", bias, persistent=False)

    def check() -> str | None:  # the fused forward against the model's own, on a probe batch
        batch, rtol = probe_batch(model), BF16_RTOL if next(model.parameters()).dtype == torch.bfloat16 else RTOL
        was = model.training
        model.eval()
        try:
            with torch.inference_mode():
                stock = model(**batch).logits
                with _one_projection(modules):
                    fused = model(**batch).logits
        finally:
            model.train(was)
        return difference(stock, fused, "the logits", rtol=rtol)

    if not modules or not verified("one-projection attention", model_kind(model), check):
        for module in modules:
            del module.qkv_weight, module.qkv_bias
        return 0
    for module in modules:
        module.forward = types.MethodType(_one_projection_attention, module)
    return len(modules)


@contextlib.contextmanager
def _one_projection(modules: list[Any]) -> Iterator[None]:
    import types

    for module in modules:
        module.forward = types.MethodType(_one_projection_attention, module)
    try:
        yield
    finally:
        for module in modules:
            module.__dict__.pop("forward", None)


def _one_projection_attention(self: Any, hidden_states: Any, attention_mask: Any = None, *args: Any,
                              **kwargs: Any) -> tuple[Any, None]:
    import torch

    from textclf.cpu_train import decoding_call

    if self.training or decoding_call(args, kwargs):
        return type(self).forward(self, hidden_states, attention_mask, *args, **kwargs)
    batch, length, _ = hidden_states.shape
    heads, size = self.num_attention_heads, self.attention_head_size
    qkv = torch.nn.functional.linear(hidden_states, self.qkv_weight, self.qkv_bias)
    q, k, v = qkv.view(batch, length, 3, heads, size).permute(2, 0, 3, 1, 4)
    # The mask transformers builds is boolean (sdpa) or additive (eager); SDPA takes either.
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=self.scaling)
    return out.transpose(1, 2).reshape(batch, length, heads * size), None


def _check_texts(texts: list[Any]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"text {i + 1} is empty: expected some words to classify; type a sentence")
