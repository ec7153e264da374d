"""What training on a CPU swaps into a model: cheaper dropout; for BERT-style attention, one fused projection; and
a last layer computed for the only token the classifier reads.

Dropout: on CPUs other than Intel's (where torch uses MKL's vectorised generator), ``torch.nn.functional.dropout``
draws one double per element from a serial Mersenne twister: measured here (AMD EPYC, 2 threads), its 20 calls were
~15% of a MiniLM training step at batch 32. The keep mask here is cut from 16-bit slices of 64-bit random integers,
4 elements per draw, from numpy's SFC64 generator (~2.7x faster than torch's ``randint``); the keep probability is
quantised to 1/65536 (0.1 becomes 0.10000610...). numpy also compares the slices and turns the flags into the scaled
mask, in the activation's dtype (torch took ~6x longer on a bool tensor). The scaled mask is one tensor that forward
and backward both multiply by (torch's version multiplies by the mask and then by the scale, both ways).

Attention: for encoders whose self-attention is the plain BERT one, queries, keys and values come from one matmul
over the concatenated weights (the query part pre-scaled by 1/sqrt(head size)), so the input is cast to bf16 once
rather than three times and the backward pass sums one input gradient, not three; the attention itself is a copy of
transformers' eager one that uses the mask above.

Last layer: BERT's pooler and the RoBERTa/ELECTRA classification heads read the encoder's output at the first token
alone, so in the last layer only that token needs a query, the attention output, the feed-forward block and the
norms; the others need just their keys and values. The same logits and gradients for ~13% fewer FLOPs (MiniLM, 6
layers): measured -10.7% a training step, and evaluations inside training are shorter too.

:func:`fast_training` makes the swaps for the duration of training and undoes them after, exception or not. Masks
come from a generator seeded from torch's global one on entry, so a seeded run stays reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

ATTENTION_NAME = "textclf_cpu_train"
# Families whose eager attention is exactly BERT's (scores, additive mask, softmax, dropout, weighted values), so
# the function below computes the same thing. Others keep their attention and get only the module swap.
PLAIN_ATTENTION = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"})


class MaskSource:
    """Keep masks from numpy's SFC64 generator: its raw 64-bit output is ~2.7x faster to draw than torch's, and
    numpy compares and scales the 16-bit slices ~5x faster than torch does on a bool tensor."""

    def __init__(self, seed: int) -> None:
        self._bits = np.random.SFC64(seed)

    def keep(self, count: int, p: float) -> np.ndarray:
        """``count`` booleans, each True with probability 1 - ``p`` (to 1/65536)."""
        draws = self._bits.random_raw((count + 3) // 4)
        return draws.view(np.uint16)[:count] >= round(p * 65536)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu",
              source: MaskSource | None = None) -> torch.Tensor:
    """A boolean tensor of ``shape``, each element True with probability 1 - ``p`` (to 1/65536). Drawn from
    ``source`` on the CPU when given, else from torch's global generator."""
    n = math.prod(shape)
    if source is not None and torch.device(device).type == "cpu":
        return torch.from_numpy(source.keep(n, p)).view(shape)
    # The full int64 range: every 16-bit slice of a draw is uniform.
    draws = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return draws.view(torch.int16)[:n].view(shape) >= -32768 + round(p * 65536)


# dtypes numpy has; bfloat16 is made from its bit pattern below.
_NUMPY_FLOATS: dict[torch.dtype, Any] = {torch.float16: np.float16, torch.float32: np.float32,
                                          torch.float64: np.float64}


@functools.lru_cache(maxsize=64)
def _bf16_bits(value: float) -> np.int16:
    return np.int16(int(torch.tensor(value, dtype=torch.bfloat16).view(torch.int16)))


def scaled_keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
                     device: torch.device | str = "cpu", source: MaskSource | None = None) -> torch.Tensor:
    """``keep_mask`` as ``dtype``: kept elements ``1 / (1 - p)`` (rounded to ``dtype``, as torch's dropout does),
    dropped ones 0."""
    scale = 1.0 / (1.0 - p)
    if source is None or torch.device(device).type != "cpu" or not (dtype == torch.bfloat16 or dtype in _NUMPY_FLOATS):
        return keep_mask(shape, p, device, source).to(dtype).mul_(scale)
    keep = source.keep(math.prod(shape), p)
    if dtype == torch.bfloat16:
        # numpy has no bfloat16: multiply the flags by the scale's bit pattern (positive, so it fits an int16; 0 is
        # the pattern of 0.0). Converting a bool tensor with torch instead costs ~6x more.
        return torch.from_numpy(np.multiply(keep, _bf16_bits(scale), dtype=np.int16)).view(dtype).view(shape)
    np_dtype = _NUMPY_FLOATS[dtype]
    return torch.from_numpy(np.multiply(keep, np_dtype(scale), dtype=np_dtype)).view(shape)


class _ScaledMask(torch.autograd.Function):
    """``x * multiplier``, whose gradient is ``grad * multiplier``: one multiplication each way."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(multiplier)
        return x * multiplier

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (multiplier,) = ctx.saved_tensors
        return grad * multiplier, None


def drop(x: torch.Tensor, p: float, training: bool = True, source: MaskSource | None = None) -> torch.Tensor:
    """``torch.nn.functional.dropout`` with the faster mask."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:  # as torch does: everything dropped (and no division by zero)
        return torch.zeros_like(x)
    multiplier = scaled_keep_mask(x.shape, p, x.dtype, x.device, source)
    return _ScaledMask.apply(x, multiplier)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the faster mask; a subclass, so code reading ``.p`` or checking the type still works."""

    source: MaskSource | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop(x, self.p, self.training, self.source)


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # transformers' BERT eager_attention_forward, with the faster dropout.
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3))
    if scaling != 1.0:
        weights = weights * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    source = getattr(getattr(module, "dropout", None), "source", None)
    weights = drop(torch.softmax(weights, dim=-1), dropout, module.training, source)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def decoding_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A self-attention call with a cache or cross-attention inputs (decoding): swapped-in forwards hand it to the
    module's own."""
    return bool(args) or any(kwargs.get(k) is not None for k in ("cache", "past_key_values", "encoder_hidden_states"))


def plain_attention(model: nn.Module) -> bool:
    """The model's self-attention is BERT's, run by transformers' sdpa or eager code: the swaps here (and the
    prediction copy's one projection) compute what it computes, with the masks those build."""
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) in PLAIN_ATTENTION
            and getattr(config, "_attn_implementation", None) in ("sdpa", "eager"))


def _fused_self_attention(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          *args: Any, first_only: bool = False, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's self-attention forward with one projection for queries, keys and values (bound to a module). With
    ``first_only``, only the first token's query: keys and values still come from every token."""
    if decoding_call(args, kwargs):
        return type(self).forward(self, hidden_states, attention_mask, *args, **kwargs)
    batch, length, _ = hidden_states.shape
    heads, size = self.num_attention_heads, self.attention_head_size
    query, key, value = self.query, self.key, self.value
    # Scaling the query weights (hidden^2 numbers) instead of the scores (batch x heads x length^2) is the same product.
    q_weight = query.weight * self.scaling
    q_bias = None if query.bias is None else query.bias * self.scaling
    if first_only:
        q = nn.functional.linear(hidden_states[:, :1], q_weight, q_bias).view(batch, 1, heads, size).transpose(1, 2)
        weight = torch.cat([key.weight, value.weight])
        bias = None if key.bias is None else torch.cat([key.bias, value.bias])
        kv = nn.functional.linear(hidden_states, weight, bias)
        k, v = kv.view(batch, length, 2, heads, size).permute(2, 0, 3, 1, 4)
        if attention_mask is not None:
            attention_mask = attention_mask[:, :, :1]  # the first query's row (a broadcast row stays as it is)
    else:
        weight = torch.cat([q_weight, key.weight, value.weight])
        bias = None if q_bias is None else torch.cat([q_bias, key.bias, value.bias])
        qkv = nn.functional.linear(hidden_states, weight, bias)
        q, k, v = qkv.view(batch, length, 3, heads, size).permute(2, 0, 3, 1, 4)
    out, weights = _attention(self, q, k, v, attention_mask, scaling=1.0,
                              dropout=self.dropout.p if self.training else 0.0)
    return out.reshape(batch, q.shape[2], -1), weights


def _first_token_layer(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A BERT layer's forward that returns the first token's output alone (bound to the encoder's last layer of a
    model whose classifier reads nothing else): for the other tokens only keys and values are computed, saving ~80%
    of the layer (a sixth of MiniLM's encoder) in training and in evaluation."""
    if args or encoder_hidden_states is not None or any(kwargs.get(k) is not None for k in ("cache", "past_key_values")):
        return type(self).forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    attention = self.attention
    context, _ = _fused_self_attention(attention.self, hidden_states, attention_mask, first_only=True)
    return self.feed_forward_chunk(attention.output(context, hidden_states[:, :1]))


# Sequence classifiers whose head reads the last layer's first token and nothing else (BERT's pooler, RoBERTa's
# and ELECTRA's classification heads: ``features[:, 0]``).
FIRST_TOKEN_CLASSIFIERS = frozenset({"BertForSequenceClassification", "RobertaForSequenceClassification",
                                     "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
                                     "ElectraForSequenceClassification"})


def first_token_layer(model: nn.Module) -> nn.Module | None:
    """The encoder's last layer when the model's classifier reads only its first token and the layer is BERT's:
    :func:`fast_training` computes that layer for the first token alone (and keys and values for the others)."""
    if type(model).__name__ not in FIRST_TOKEN_CLASSIFIERS:
        return None
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    last = layers[-1] if isinstance(layers, nn.ModuleList) and len(layers) else None
    attention = getattr(last, "attention", None)
    if (last is None or getattr(last, "is_decoder", True) or getattr(last, "add_cross_attention", True)
            or not callable(getattr(last, "feed_forward_chunk", None)) or not hasattr(attention, "output")
            or not fusable(getattr(attention, "self", None))):
        return None
    return last


def fusable(module: nn.Module | None) -> bool:
    """A BERT-style self-attention: query, key and value projections of one input, to heads of a known size."""
    projections = [getattr(module, name, None) for name in ("query", "key", "value")]
    return (all(type(p) is nn.Linear for p in projections)
            and len({(p.in_features, p.out_features, p.bias is None) for p in projections}) == 1
            and all(hasattr(module, a) for a in ("num_attention_heads", "attention_head_size", "scaling", "dropout"))
            and not getattr(module, "is_decoder", False) and "Cross" not in type(module).__name__
            and projections[0].out_features == module.num_attention_heads * module.attention_head_size)


@functools.cache
def _register_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # the additive float mask eager attention takes
    return ATTENTION_NAME


@contextlib.contextmanager
def _fast_dropout(model: nn.Module, source: MaskSource) -> Iterator[None]:
    """Every ``nn.Dropout`` of ``model`` a :class:`FastDropout` inside the block."""
    swapped: list[tuple[nn.Module, str, nn.Dropout]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p, child.inplace)
                replacement.source = source
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)


@contextlib.contextmanager
def _rerouted(model: nn.Module, fused: list[nn.Module], last: nn.Module | None) -> Iterator[None]:
    """The model's attention through :func:`_attention`, ``fused`` self-attentions with one projection and ``last``
    computed for the first token alone, inside the block."""
    original = model.config._attn_implementation
    patched = fused + ([last] if last is not None else [])
    try:
        model.set_attn_implementation(_register_attention())
        for module in fused:
            module.forward = types.MethodType(_fused_self_attention, module)
        if last is not None:
            last.forward = types.MethodType(_first_token_layer, last)
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)  # the class's forward again
        model.set_attn_implementation(original)


def _check_dropout() -> str | None:
    """:func:`drop` against ``torch.nn.functional.dropout``: the same kept values (scaled as torch scales them, in
    each dtype), a keep rate within 1% of 1 - p, and gradients that flow through the kept elements alone."""
    from textclf.patch_check import difference

    p = 0.25
    for dtype in (torch.float32, torch.bfloat16):
        with torch.inference_mode(False), torch.enable_grad():  # gradients, even when called under inference_mode
            ones = torch.ones(1 << 16, dtype=dtype, requires_grad=True)
            ours = drop(ones, p, True, MaskSource(0))
            ours.backward(torch.full_like(ours, 2.0))
        stock_scale = float(nn.functional.dropout(torch.ones(64, dtype=dtype), p).max())
        values = set(torch.unique(ours.detach().float()).tolist())
        if not values <= {0.0, stock_scale}:
            return f"{dtype} dropout gives values {sorted(values)[:4]}, torch's 0 and {stock_scale}"
        kept = float((ours != 0).float().mean())
        if abs(kept - (1 - p)) > 0.01:
            return f"{dtype} dropout keeps {kept:.3f} of the elements at p={p}, not {1 - p}"
        problem = difference(ours.detach() * 2.0, ones.grad, f"the {dtype} dropout gradient")
        if problem:
            return problem
    return None


@contextlib.contextmanager
def fast_training(model: nn.Module) -> Iterator[None]:
    """Train ``model`` with :class:`FastDropout` (and, for plain BERT-style attention, the fused projection and the
    first-token last layer) inside the block; its modules, forwards and attention come back after. Each swap first
    checks itself against the stock code (:mod:`textclf.patch_check`) and steps aside where they differ."""
    from textclf.patch_check import compare_training, model_kind, verified

    kind = model_kind(model)
    reroute = plain_attention(model) and getattr(model, "_supports_attention_backend", False)
    fused = [m for m in model.modules() if fusable(m)] if reroute else []
    if reroute and not verified("fused attention", kind, lambda: compare_training(
            model, lambda: _rerouted(model, fused, None))):
        reroute, fused = False, []
    last = first_token_layer(model) if reroute else None
    if last is not None and not verified("first-token last layer", kind, lambda: compare_training(
            model, lambda: _rerouted(model, fused, last))):
        last = None
    source = MaskSource(int(torch.randint(0, 2**62, ()).item()))  # from torch's generator: seeded runs repeat
    with contextlib.ExitStack() as stack:
        if verified("fast dropout", "torch", _check_dropout):
            stack.enter_context(_fast_dropout(model, source))
        if reroute:
            stack.enter_context(_rerouted(model, fused, last))
        yield
