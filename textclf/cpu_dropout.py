"""Dropout for training on CPUs, without torch's per-element Bernoulli sampling.

On CPUs other than Intel's (where torch uses MKL's vectorised generator), ``torch.nn.functional.dropout`` draws one
double per element from a serial Mersenne twister: measured here (AMD EPYC, 2 threads), its 20 calls were ~15% of a
MiniLM training step at batch 32. The keep mask here is cut from 16-bit slices of 64-bit random integers, 4 elements
per draw, about 3x faster; the keep probability is quantised to 1/65536 (0.1 becomes 0.10000610...).

:func:`fast_dropout` swaps a model's ``nn.Dropout`` modules for :class:`FastDropout` for the duration of training
and, for encoders whose attention is the plain BERT-style one, routes attention through a copy of it that uses the
same mask (the attention-probability dropout is a function call there, not a module). It draws from torch's global
generator, so a seeded run stays reproducible.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

ATTENTION_NAME = "textclf_cpu_dropout"
# Families whose eager attention is exactly BERT's (scores, additive mask, softmax, dropout, weighted values), so
# the function below computes the same thing. Others keep their attention and get only the module swap.
PLAIN_ATTENTION = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"})


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean tensor of ``shape``, each element True with probability 1 - ``p`` (to 1/65536)."""
    n = 1
    for size in shape:
        n *= size
    # The full int64 range: every 16-bit slice of a draw is uniform.
    draws = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return draws.view(torch.int16)[:n].view(shape) >= -32768 + round(p * 65536)


def drop(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout`` with the faster mask."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:  # as torch does: everything dropped (and no division by zero)
        return torch.zeros_like(x)
    return x * keep_mask(x.shape, p, x.device) * (1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the faster mask; a subclass, so code reading ``.p`` or checking the type still works."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop(x, self.p, self.training)


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # transformers' BERT eager_attention_forward, with the faster dropout.
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = drop(torch.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


@functools.cache
def _register_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # the additive float mask eager attention takes
    return ATTENTION_NAME


@contextlib.contextmanager
def fast_dropout(model: nn.Module) -> Iterator[None]:
    """Train ``model`` with :class:`FastDropout` inside the block; its modules and attention come back after."""
    swapped: list[tuple[nn.Module, str, nn.Dropout]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    config = getattr(model, "config", None)
    original = getattr(config, "_attn_implementation", None)
    reroute = (getattr(config, "model_type", None) in PLAIN_ATTENTION and original in ("sdpa", "eager")
               and getattr(model, "_supports_attention_backend", False))
    try:
        if reroute:
            model.set_attn_implementation(_register_attention())
        yield
    finally:
        if reroute:
            model.set_attn_implementation(original)
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
