"""Fine-tuning: one short, model-agnostic training loop.

AdamW with two learning rates (encoder ``lr``, head ``lr * head_lr_ratio``), optional layer-wise decay, no weight decay
on biases and norms, warmup + linear decay, gradient clipping, dynamic padding over length-grouped batches, bf16
autocast where the CPU supports it, evaluation every epoch (or every N steps / k times an epoch) through a callback the
study uses for pruning, early stopping, and the best weights restored at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textclf.errors import ConfigError
from textclf.metrics import METRICS, THRESHOLD_MODES, compute_metrics, default_metric, label_matrix, softmax_or_sigmoid

PRECISIONS = ("auto", "bf16", "fp32")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs; validated on creation."""

    lr: float = 5e-5
    head_lr_ratio: float = 10.0
    batch_size: int = 32
    epochs: int = 3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    layer_decay: float = 1.0
    max_grad_norm: float = 1.0
    max_length: int = 128  # the tokens a text was cut to: the latency probe cuts the same
    evals_per_epoch: int = 1
    eval_every_steps: int | None = None
    # Mid-epoch evaluations only feed the pruner: with this set they score a fixed random sample of this many
    # validation rows; epoch-end evaluations, which pick the weights kept, always score all of them.
    pruning_eval_rows: int | None = None
    # In the first epoch such pruning-only evaluations score instead the training rows since the last one, as the
    # model predicted them just before training on them: held out, and free (progressive validation).
    progressive_pruning: bool = True
    early_stopping_patience: int | None = None
    eval_batch_size: int = 128
    seed: int = 42
    precision: str = "auto"
    metric: str | None = None
    threshold_mode: str = "global"   # multi-label: one decision threshold, or one per class ("per_class")
    class_weight: str = "none"       # "balanced": weight the loss by inverse class frequency (imbalanced data)

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "head_lr_ratio": self.head_lr_ratio, "batch_size": self.batch_size,
                    "epochs": self.epochs, "max_length": self.max_length, "evals_per_epoch": self.evals_per_epoch,
                    "eval_batch_size": self.eval_batch_size, "max_grad_norm": self.max_grad_norm}
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1] (1 = no decay), got {self.layer_decay!r}")
        if self.pruning_eval_rows is not None and self.pruning_eval_rows < 1:
            raise ConfigError(f"pruning_eval_rows must be >= 1 (or None for all rows), got {self.pruning_eval_rows!r}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ConfigError(f"eval_every_steps must be >= 1, got {self.eval_every_steps!r}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience must be >= 1, got {self.early_stopping_patience!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ConfigError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {self.threshold_mode!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(f"class_weight must be one of {CLASS_WEIGHTS}, got {self.class_weight!r}")
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    metrics: dict[str, float]           # validation metrics of the restored (best) weights
    history: list[dict[str, Any]]       # one row per evaluation: epoch, step, train_loss and validation metrics
    train_time_s: float
    steps: int
    val_probs: np.ndarray = field(repr=False)
    stopped_early: bool = False
    out_of_time: bool = False           # stopped at ``deadline``, with an evaluation of where it stood


# ------------------------------------------------------------------------------------------------------ precision
def cpu_bf16_unit() -> str | None:
    """The CPU's native bf16 matmul unit, "AMX-BF16" or "AVX512-BF16"; None without one (or without /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = set(next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []))
    except OSError:
        return None
    return "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None


def bf16_supported(device: str = "cpu") -> bool:
    """bf16 autocast pays on CPUs with native bf16 (AVX512-BF16 / AMX) and on GPUs that support it."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_bf16_unit() is not None


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# oneDNN, which runs torch's bf16 matmuls on CPUs, caches 1,024 compiled kernels by default. One epoch of length-grouped
# batches needs more (each batch's padded length is a new shape for every projection, forward and backward: ~1,200 for
# 2,000 sst2 sentences at batch 32), and a least-recently-used cache cycled through more than it holds misses every
# time: measured, the second epoch recompiled 826 kernels (0.42-0.57 s of a 13-17 s epoch) and the process ended
# 260-400 MB larger than with room for all of them. Each cached kernel holds ~0.6 MB; 2,048 is room for an epoch's
# shapes plus evaluation's.
ONEDNN_KERNEL_CACHE = 2048


@functools.cache
def tune_runtime() -> None:
    """Process-wide settings for CPU training and prediction, made once: the glibc heap keeps freed memory
    (training allocates and frees the same large activation buffers every step, and returning them to the OS costs
    page faults: measured -11% time per epoch), and oneDNN's kernel cache gets room for an epoch's shapes. oneDNN
    reads its cache size when it compiles its first kernel: call this before any matmul (train() and Predictor do;
    a value the user set in the environment is kept)."""
    if not any(f"{prefix}_PRIMITIVE_CACHE_CAPACITY" in os.environ for prefix in ("ONEDNN", "DNNL")):
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_KERNEL_CACHE)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: don't give the heap top back to the OS
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve large blocks from the heap, not fresh mmaps
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------------ optimizer
_LAYER_RE = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


def _layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i+1 for transformer layer i, num_layers for anything else in the encoder (pooler...)."""
    match = _LAYER_RE.search(name)
    if match:
        return int(match.group(1)) + 1
    return 0 if "embed" in name or "word_emb" in name or "mask_emb" in name else num_layers


def param_groups(model: Any, head_prefixes: Sequence[str], *, lr: float, head_lr_ratio: float, weight_decay: float,
                 layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """AdamW parameter groups: head at ``lr * head_lr_ratio``, encoder at ``lr`` (times ``layer_decay ** distance
    from the top`` when layer-wise decay is on); biases and norm weights (1-D tensors) get no weight decay.

    One group per distinct (head or not, learning rate, weight decay): without layer-wise decay that is four groups,
    not one per layer. Each group costs the optimizer a pass of Python bookkeeping a step (~0.2 ms here, 16 groups
    were ~3 ms of MiniLM's 11 ms AdamW step)."""
    num_layers = int(getattr(model.config, "num_hidden_layers", 0) or getattr(model.config, "n_layer", 0) or 0)
    groups: dict[tuple[bool, bool, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = any(name == p or name.startswith(p + ".") for p in head_prefixes)
        no_decay = param.ndim < 2
        depth = num_layers if is_head else _layer_depth(name, num_layers)
        scale = head_lr_ratio if is_head else layer_decay ** (num_layers - depth)
        key = (is_head, no_decay, scale)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay,
                           "is_head": is_head}
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_optimizer(model: Any, head_prefixes: Sequence[str], cfg: TrainConfig) -> Any:
    import torch

    groups = param_groups(model, head_prefixes, lr=cfg.lr, head_lr_ratio=cfg.head_lr_ratio,
                          weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    if not any(g["is_head"] for g in groups):
        raise ConfigError(f"no classification-head parameters match {list(head_prefixes)}; "
                          "register the backbone with the right head_modules")
    # The fused kernel (CPU and CUDA) updates all parameters in one pass: ~4x less optimizer time than foreach.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def clipped_step(optimizer: Any, max_norm: float) -> float:
    """``clip_grad_norm_(params, max_norm)`` then ``optimizer.step()``; returns the gradients' global L2 norm.

    On the CPU, torch's clipping makes two passes over every gradient: a norm (its CPU ``vector_norm`` took 7.8 ms
    for MiniLM's 13.7M gradient numbers here) and a multiplication by the clip coefficient, even when that is 1
    (2.3-5 ms). Here the norm is a sum of BLAS dot products (2.5 ms), and the multiplication is skipped when nothing
    is clipped or, for optimizers that take ``GradScaler``'s ``grad_scale`` (fused AdamW), left to the optimizer,
    which divides each gradient by it in the pass it makes anyway. Elsewhere (CUDA: a norm read back is a sync) and
    for half-precision gradients, torch's own clipping."""
    import torch

    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or any(g.device.type != "cpu" or g.dtype not in (torch.float32, torch.float64) for g in grads):
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        optimizer.step()
        return norm
    norm = math.sqrt(sum(float(torch.dot(g.reshape(-1), g.reshape(-1))) for g in grads))
    if not math.isfinite(norm):
        raise TrainingDiverged(f"the gradient norm became {norm}; lower the learning rate")
    coefficient = max_norm / (norm + 1e-6)  # clip_grad_norm_'s, epsilon included
    # The flag GradScaler checks: the optimizer's step divides by ``grad_scale`` (fused AdamW, fused SGD).
    if coefficient < 1.0 and _grad_scale_clips(optimizer):
        _step_scaled(optimizer, 1.0 / coefficient)
        return norm
    if coefficient < 1.0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, torch.tensor(norm))
    optimizer.step()
    return norm


def _step_scaled(optimizer: Any, scale: float) -> None:
    """One step that divides every gradient by ``scale`` on the way (``GradScaler``'s private hand-off)."""
    import torch

    optimizer.grad_scale = torch.tensor(scale)
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale


def _grad_scale_clips(optimizer: Any) -> bool:
    """Whether handing the clip coefficient to ``optimizer`` as ``grad_scale`` takes the step torch's clipping
    takes: checked once per process and optimizer kind on a probe (:mod:`textclf.patch_check`)."""
    if not getattr(optimizer, "_step_supports_amp_scaling", False):
        return False
    import inspect

    import torch

    from textclf.patch_check import difference, verified

    def check() -> str | None:
        # Three steps, clipped, not, clipped: Adam-like optimizers are blind to one step's scale, not to a mix.
        with torch.inference_mode(False):
            start = torch.linspace(-1.0, 1.0, 64)
            stock, ours = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
            accepted = inspect.signature(type(optimizer)).parameters
            kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted}
            optimizers = [type(optimizer)([p], **kwargs) for p in (stock, ours)]
            for grad in (torch.linspace(3.0, -2.0, 64), torch.linspace(-0.01, 0.02, 64), torch.linspace(-9.0, 4.0, 64)):
                stock.grad, ours.grad = grad.clone(), grad.clone()
                norm = float(grad.norm())
                torch.nn.utils.clip_grad_norm_([stock], 1.0)
                optimizers[0].step()
                if norm > 1.0:
                    _step_scaled(optimizers[1], norm + 1e-6)
                else:
                    optimizers[1].step()
            return difference(stock.detach() - start, ours.detach() - start, "the clipped steps")

    kind = (type(optimizer).__name__, tuple(sorted((k, str(v)) for k, v in optimizer.defaults.items())))
    return verified("clipping by grad_scale", kind, check)


# ------------------------------------------------------------------------------------------------------ batching
@dataclass
class Encoded:
    """Token ids of one split (unpadded) with its labels."""

    features: list[dict[str, list[int]]]
    labels: list[Any]

    def __len__(self) -> int:
        return len(self.features)


TRUNCATIONS = ("head", "head_tail")
# Head+tail truncation keeps this share of a long text's tokens from its start and the rest from its end: Sun et al.
# (2019, "How to Fine-Tune BERT for Text Classification?") found 128 + 382 of 512 best on long reviews.
HEAD_SHARE = 0.25


def _ends(mask: list[int]) -> tuple[int, int]:
    """How many special tokens lead and trail a sequence, from its special-tokens mask."""
    lead = next((i for i, m in enumerate(mask) if not m), len(mask))
    trail = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
    return lead, trail


def tokenize(tokenizer: Any, texts: list[str], max_length: int, truncation: str = "head") -> dict[str, list[Any]]:
    """Token ids (and the tokenizer's other columns) of ``texts``, unpadded, cut to ``max_length`` tokens special
    tokens included: the first ones (``head``), or the first ``HEAD_SHARE`` and the last of the rest (``head_tail``),
    the special tokens kept where the tokenizer puts them (XLNet's at the end)."""
    if truncation == "head":
        return dict(tokenizer(texts, truncation=True, max_length=max_length))
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    enc = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
    masks = enc.pop("special_tokens_mask")
    out: dict[str, list[Any]] = {k: [] for k in enc}
    for i, mask in enumerate(masks):
        n = len(mask)
        if n <= max_length:
            keep: list[int] | range = range(n)
        else:
            lead, trail = _ends(mask)
            budget = max(max_length - lead - trail, 2)
            head = max(1, round(budget * HEAD_SHARE))
            keep = [*range(lead + head), *range(n - trail - (budget - head), n)]
        for k, column in enc.items():
            out[k].append([column[i][j] for j in keep])
    return out


def encode(tokenizer: Any, texts: list[str], labels: list[Any], max_length: int, truncation: str = "head") -> Encoded:
    """Tokenise once (truncated, unpadded): padding happens per batch, to the batch's longest text."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts})
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # an in-memory map of a few thousand rows: a progress bar is noise
    try:
        ds = ds.map(lambda b: tokenize(tokenizer, b["text"], max_length, truncation), batched=True,
                    remove_columns=["text"])
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    data = ds.to_dict()  # plain lists: indexing datasets' lazy Column per row was ~100x slower
    features = [{c: values[i] for c, values in data.items()} for i in range(len(ds))]
    return Encoded(features, list(labels))


def sample_rows(enc: Encoded, n: int, seed: int) -> Encoded:
    """A fixed random sample of ``n`` rows (all of them if there are no more than ``n``)."""
    if len(enc) <= n:
        return enc
    idx = sorted(random.Random(seed).sample(range(len(enc)), n))
    return Encoded([enc.features[i] for i in idx], [enc.labels[i] for i in idx])


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length texts: random mega-batches of 50 batches, sorted by length inside, so
    padding is small but the order stays random (the scheme of transformers' group_by_length)."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(tokenizer: Any, enc: Encoded, idx: Sequence[int], task: str, num_labels: int, device: str
            ) -> tuple[dict[str, Any], Any]:
    import torch

    # tokenizer.pad honours padding_side (left for XLNet) and each family's pad token type id.
    batch = tokenizer.pad([enc.features[i] for i in idx], padding=True, return_tensors="pt")
    inputs = {k: v.to(device) for k, v in batch.items()}
    if task == "single_label":
        y = torch.tensor([enc.labels[i] for i in idx], dtype=torch.long)
    else:
        y = torch.tensor(label_matrix([enc.labels[i] for i in idx], num_labels), dtype=torch.float32)
    return inputs, y.to(device)


def _autocast(precision: str, device: str) -> Any:
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")


def predict_logits(model: Any, tokenizer: Any, enc: Encoded, *, batch_size: int = 128, precision: str = "fp32",
                   device: str = "cpu") -> np.ndarray:
    """Logits for every row, in order; batches are built from length-sorted rows so padding is minimal."""
    import torch

    model.eval()
    order = sorted(range(len(enc)), key=lambda i: len(enc.features[i]["input_ids"]))
    out = np.zeros((len(enc), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode(), _autocast(precision, device):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad([enc.features[i] for i in idx], padding=True, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[idx] = logits.float().cpu().numpy()
    return out


def class_weights(labels: list[Any], task: str, num_labels: int, device: str = "cpu") -> Any:
    """Single-label: n / (k * count_c), scikit-learn's "balanced" weights for cross-entropy. Multi-label: the BCE
    pos_weight negatives / positives per class, capped at 50 so a class seen once cannot dominate the loss."""
    import torch

    if task == "single_label":
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
        w = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 0.0)
    else:
        pos = label_matrix(labels, num_labels).sum(axis=0).astype(np.float64)
        w = np.clip((len(labels) - pos) / np.maximum(pos, 1), 1.0, 50.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


# ------------------------------------------------------------------------------------------------------ loop
EvalCallback = Callable[[int, dict[str, float]], None]
StepCallback = Callable[[int, int], None]


def _eval_points(cfg: TrainConfig, steps_per_epoch: int) -> dict[int, float]:
    """Steps within an epoch after which to evaluate, each with the share of the epoch it reports; the epoch's last
    step always is one. Spreading k evaluations evenly (rather than every steps//k) keeps the last one from landing a
    step before the epoch-end one, and reporting each at exactly i/k lets trials with other batch sizes report at the
    same points (63 steps put the second of 4 at step 32, 51% of the epoch, and the pruner only compares trials at
    equal points)."""
    if cfg.eval_every_steps:
        points = {s: s / steps_per_epoch for s in range(cfg.eval_every_steps, steps_per_epoch, cfg.eval_every_steps)}
        points[steps_per_epoch] = 1.0
        return points
    k = min(cfg.evals_per_epoch, steps_per_epoch)
    return {round(i * steps_per_epoch / k): i / k for i in range(1, k + 1)}


class _Evaluator:
    """The training loop's evaluations: it scores, keeps the best weights (on full evaluations only), writes the
    history, reports to ``on_eval`` and says when early stopping should stop.

    Progressive validation: in the first epoch each training row is predicted once, before the model trains on it,
    so the rows since the last evaluation are a held-out sample scored for free (in training mode: with dropout).
    Pruning-only evaluations of the first epoch use them instead of scoring validation rows."""

    def __init__(self, model: Any, tokenizer: Any, val_enc: Encoded, cfg: TrainConfig, *, task: str, metric: str,
                 precision: str, device: str, steps_per_epoch: int, on_eval: EvalCallback | None) -> None:
        self.model, self.tokenizer, self.val_enc, self.cfg = model, tokenizer, val_enc, cfg
        self.task, self.metric, self.precision, self.device = task, metric, precision, device
        self.steps_per_epoch, self.on_eval = steps_per_epoch, on_eval
        self.points = _eval_points(cfg, steps_per_epoch)
        self.pruning_enc = sample_rows(val_enc, cfg.pruning_eval_rows, cfg.seed) if cfg.pruning_eval_rows else val_enc
        self.progressive = cfg.progressive_pruning and self.pruning_enc is not val_enc
        self.vocab: Any = None  # the compacted vocabulary, once training has set it up
        self.history: list[dict[str, Any]] = []
        self.best_value, self.best_state, self.best_probs, self.best_metrics = -math.inf, None, None, {}
        self.since_best = 0
        self.last_reported = -1  # the percent last passed to on_eval
        self.loss_sum, self.n_loss = 0.0, 0
        self.seen_labels: list[Any] = []
        self.seen_logits: list[Any] = []

    def add_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.n_loss += 1

    def add_seen(self, logits: Any, labels: list[Any]) -> None:
        """Training rows predicted just before the model trains on them (first epoch, progressive validation)."""
        self.seen_logits.append(logits.detach().cpu())
        self.seen_labels.extend(labels)

    def due(self, step: int, epoch: int) -> tuple[bool, bool] | None:
        """Whether ``step`` ends with an evaluation: (full, on the rows seen), or None."""
        in_epoch = step - epoch * self.steps_per_epoch
        if in_epoch not in self.points:
            return None
        full = in_epoch == self.steps_per_epoch
        return full, self.progressive and epoch == 0 and not full

    def evaluate(self, step: int, full: bool = True, seen: bool = False) -> bool:
        """Evaluate, keep the best weights, call back; True when early stopping says stop. A partial evaluation
        (mid-epoch: on the pruning sample, or on the rows ``seen`` since the last one) only reports: weights are kept
        and compared on full ones."""
        cfg, task, metric = self.cfg, self.task, self.metric
        if seen:
            import torch

            labels, full = list(self.seen_labels), False
            probs = softmax_or_sigmoid(torch.cat(self.seen_logits).numpy(), task)
            metrics = compute_metrics(task, labels, probs, metric=metric, threshold_mode=cfg.threshold_mode)
        else:
            enc = self.val_enc if full else self.pruning_enc
            labels, full = enc.labels, enc is self.val_enc  # a validation split no larger than the sample: always full
            with self.vocab.full_table():  # the whole vocabulary: validation texts use rows training never touched
                logits = predict_logits(self.model, self.tokenizer, enc, batch_size=cfg.eval_batch_size,
                                        precision=self.precision, device=self.device)
                probs = softmax_or_sigmoid(logits, task)
                metrics = compute_metrics(task, labels, probs, metric=metric, threshold_mode=cfg.threshold_mode)
                if full:
                    self._keep_if_best(metrics, probs)
            self.model.train()
        self.seen_labels.clear()
        self.seen_logits.clear()
        scored = {**metrics, "rows": len(labels), **({"on": "train"} if seen else {})}
        row = {"step": step, "epoch": step / self.steps_per_epoch, "train_loss": self.loss_sum / max(self.n_loss, 1)}
        self.history.append({**row, **(metrics if full else scored)})
        self.loss_sum, self.n_loss = 0.0, 0
        # Progress in hundredths of an epoch: comparable across batch sizes. A deadline stop reports where it is.
        epochs_done, in_epoch = divmod(step, self.steps_per_epoch)
        percent = round(100 * (epochs_done + self.points.get(in_epoch, in_epoch / self.steps_per_epoch)))
        if self.on_eval is not None and percent != self.last_reported:
            self.last_reported = percent
            self.on_eval(percent, scored)
        return full and cfg.early_stopping_patience is not None and self.since_best >= cfg.early_stopping_patience

    def _keep_if_best(self, metrics: dict[str, Any], probs: np.ndarray) -> None:
        if metrics[self.metric] > self.best_value:
            self.best_value, self.best_metrics, self.best_probs, self.since_best = metrics[self.metric], metrics, probs, 0
            # A CPU copy of the best weights: restoring them at the end is what early stopping promises.
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            self.since_best += 1


def train(model: Any, tokenizer: Any, train_enc: Encoded, val_enc: Encoded, cfg: TrainConfig, *, task: str,
          head_prefixes: Sequence[str], on_eval: EvalCallback | None = None, on_step: StepCallback | None = None,
          progress: bool = False, device: str | None = None, deadline: float | None = None) -> TrainResult:
    """Fine-tune ``model`` in place and return validation metrics of its best evaluation (whose weights it keeps).

    ``on_eval(percent_of_an_epoch_done, metrics)`` is called after each evaluation; the study reports to Optuna
    there and raises ``optuna.TrialPruned`` to stop a hopeless trial. ``on_step(step, total_steps)`` follows progress.
    At ``deadline`` (a ``time.monotonic()`` value) training stops after an evaluation of where it stands, so a time
    budget ends with a usable model rather than a lost trial.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from textclf.compact_vocab import compact_vocab
    from textclf.cpu_train import fast_training

    device = device or default_device()
    tune_runtime()
    precision = resolve_precision(cfg.precision, device)
    num_labels = int(model.config.num_labels)
    seed_everything(cfg.seed)
    model.to(device)
    steps_per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    evaluator = _Evaluator(model, tokenizer, val_enc, cfg, task=task, metric=cfg.metric or default_metric(task),
                           precision=precision, device=device, steps_per_epoch=steps_per_epoch, on_eval=on_eval)
    lengths = [len(f["input_ids"]) for f in train_enc.features]
    rng = random.Random(cfg.seed)
    weight = class_weights(train_enc.labels, task, num_labels, device) if cfg.class_weight == "balanced" else None
    step, stopped_early, out_of_time = 0, False, False
    start = time.perf_counter()

    model.train()
    # torch's CPU dropout samples one element at a time (~15% of a step), BERT-style attention projects three
    # times what one matmul can, and the last layer computes every token for a head that reads the first:
    # textclf.cpu_train swaps all three. CUDA's dropout is fast already.
    faster = fast_training(model) if device == "cpu" else contextlib.nullcontext()
    # Only the vocabulary rows the training texts use get gradients: the optimizer sees just those (same updates).
    used_ids = [f["input_ids"] for f in train_enc.features] + [[tokenizer.pad_token_id]] * (tokenizer.pad_token_id is not None)
    with tqdm(total=total_steps, disable=not progress, desc="training", unit="step", leave=False) as bar, faster, \
            compact_vocab(model, used_ids) as vocab:
        evaluator.vocab = vocab
        optimizer = build_optimizer(model, head_prefixes, cfg)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_fraction * total_steps), total_steps)
        for epoch in range(cfg.epochs):
            for idx in length_grouped_batches(lengths, cfg.batch_size, rng):
                inputs, y = collate(tokenizer, train_enc, idx, task, num_labels, device)
                with _autocast(precision, device):
                    logits = model(**inputs).logits
                logits = logits.float()  # the loss in fp32: bf16 log-softmax loses too much precision
                loss = (F.cross_entropy(logits, y, weight=weight) if task == "single_label"
                        else F.binary_cross_entropy_with_logits(logits, y, pos_weight=weight))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} at step {step}; lower the learning rate")
                if evaluator.progressive and epoch == 0:
                    evaluator.add_seen(logits, [train_enc.labels[i] for i in idx])
                loss.backward()
                clipped_step(optimizer, cfg.max_grad_norm)
                vocab.after_step(optimizer)  # before the scheduler changes the learning rate this step used
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                evaluator.add_loss(loss.item())
                bar.update(1)
                if on_step is not None:
                    on_step(step, total_steps)
                due = evaluator.due(step, epoch)
                if due is not None and evaluator.evaluate(step, *due):
                    stopped_early = True
                    break
                if deadline is not None and time.monotonic() >= deadline and step < total_steps:
                    if due is None or not due[0]:  # not just evaluated in full: the kept weights need a full one
                        evaluator.evaluate(step)
                    stopped_early = out_of_time = True
                    break
            if stopped_early:
                break
    train_time = time.perf_counter() - start
    if evaluator.best_state is not None:
        model.load_state_dict(evaluator.best_state)
    model.eval()
    if evaluator.best_probs is None:  # every epoch ends with a full evaluation, so this would be a bug
        raise RuntimeError("training ended without a full evaluation")
    return TrainResult(metrics=evaluator.best_metrics, history=evaluator.history, train_time_s=train_time, steps=step,
                       val_probs=evaluator.best_probs, stopped_early=stopped_early, out_of_time=out_of_time)
