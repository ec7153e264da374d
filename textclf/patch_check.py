"""Self-checks for textclf's speed patches, which replace pieces of torch and transformers with faster equivalents
(:mod:`textclf.cpu_train`, :func:`textclf.predict.fuse_attention_projections`, :func:`textclf.train.clipped_step`).

A patch is only as good as its claim to compute what the stock code computes, and that code changes between
releases. So the first time a patch is about to be used in a process for a kind of model (or optimizer), it runs the
stock code and itself on a small probe and compares: the same logits and gradients within :data:`RTOL` (float32) or
:data:`BF16_RTOL` (bfloat16). A patch that differs, or fails, is skipped for that kind with one
:class:`PatchSkipped` warning, and the work goes on with the stock code.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import Any

RTOL = 1e-4  # float32: the patches reorder sums (one matmul for three), nothing more
BF16_RTOL = 2e-2  # bfloat16 keeps 8 bits of mantissa
_verdicts: dict[tuple[str, Hashable], bool] = {}


class PatchSkipped(RuntimeWarning):
    """A speed patch did not match the stock code on its probe and is not used."""


def verified(patch: str, kind: Hashable, check: Callable[[], str | None]) -> bool:
    """Whether ``patch`` may be used for ``kind``: ``check()`` returns None when the patch matches the stock code,
    else what differed. It runs once per process and kind; a mismatch (or an error in the check) warns once."""
    key = (patch, kind)
    if key not in _verdicts:
        try:
            problem = check()
        except Exception as exc:  # a patch that cannot even run its probe is not one to trust
            problem = f"{type(exc).__name__}: {exc}"
        _verdicts[key] = problem is None
        if problem is not None:
            warnings.warn(f"textclf's {patch} does not match the stock code for {kind}: {problem}; it is skipped "
                          "and the work goes on without it", PatchSkipped, stacklevel=2)
    return _verdicts[key]


def forget() -> None:
    """Drop every verdict (tests)."""
    _verdicts.clear()


def difference(stock: Any, patched: Any, what: str, rtol: float = RTOL, floor: float = 1e-6) -> str | None:
    """None when the tensors agree (max |difference| within ``rtol`` of the stock's max |value|, or of ``floor`` if
    that is larger), else a line."""
    import torch

    if stock.shape != patched.shape:
        return f"{what} has shape {tuple(patched.shape)}, the stock code's {tuple(stock.shape)}"
    stock, patched = stock.detach().float(), patched.detach().float()
    if not bool(torch.isfinite(patched).all()):
        return f"{what} is not finite"
    scale = float(stock.abs().max()) if stock.numel() else 0.0
    err = float((stock - patched).abs().max()) if stock.numel() else 0.0
    if err > rtol * max(scale, floor):
        return f"{what} differs by {err:.3g} (largest value {scale:.3g}, tolerance {rtol:g} of it)"
    return None


def model_kind(model: Any) -> tuple[str, ...]:
    """What a model patch's verdict holds for: the model's class, type, attention code and head layout."""
    config = getattr(model, "config", None)
    return (type(model).__name__, str(getattr(config, "model_type", "")),
            str(getattr(config, "_attn_implementation", "")), str(getattr(config, "hidden_size", "")),
            str(getattr(config, "num_attention_heads", "")), str(next(model.parameters()).dtype))


def probe_batch(model: Any) -> dict[str, Any]:
    """Two rows of 12 token ids from a fixed generator, the second padded (on the right) after 8."""
    import torch

    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(min(5, vocab - 1), vocab, (2, 12), generator=generator)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    device = next(model.parameters()).device
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


@contextlib.contextmanager
def probing(model: Any) -> Iterator[None]:
    """Evaluation mode (no dropout: the probe is deterministic) with gradients on, even inside ``inference_mode``,
    and every module's mode and every parameter's gradient as they were after."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, grad in grads:
            p.grad = grad


def logits_and_grads(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The probe's logits, and the gradients of a fixed weighted sum of them (every logit matters)."""
    import torch

    for p in model.parameters():
        p.grad = None
    logits = model(**batch).logits
    weights = torch.linspace(-1.0, 1.0, logits.numel(), device=logits.device).view_as(logits)
    (logits.float() * weights).sum().backward()
    return logits.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare_training(model: Any, patch: Callable[[], contextlib.AbstractContextManager[Any]]) -> str | None:
    """Logits and gradients of ``model`` on the probe, stock against inside ``patch()``."""
    batch = probe_batch(model)
    with probing(model):
        stock_logits, stock_grads = logits_and_grads(model, batch)
        with patch():
            logits, grads = logits_and_grads(model, batch)
    problem = difference(stock_logits, logits, "the logits")
    if problem:
        return problem
    if set(grads) != set(stock_grads):
        return f"{len(set(stock_grads) ^ set(grads))} parameters get a gradient in one and not the other"
    # A parameter's gradient that is tiny next to the others' is held to the others' scale: summed in another order,
    # its cancellations leave float32 noise that is large relative to it and irrelevant to training.
    floor = 1e-2 * max((float(g.abs().max()) for g in stock_grads.values() if g.numel()), default=0.0)
    for name, grad in stock_grads.items():
        problem = difference(grad, grads[name], f"the gradient of {name}", floor=max(floor, 1e-6))
        if problem:
            return problem
    return None
