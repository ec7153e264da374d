"""Training only the vocabulary rows the training texts use: the same updates, a fraction of the optimizer's work.

A pretrained word embedding is about half of a small encoder (MiniLM: 11.7M of 22.7M parameters), yet 2,000 sst2
sentences use 7,108 of its 30,522 rows. Every step, autograd still fills a dense gradient for all rows, clipping reads
it and AdamW updates every row. For a row no training text contains, AdamW's moments stay exactly zero, so its
update is the decoupled weight decay alone: ``w *= 1 - lr * weight_decay``. Training therefore gives the same
weights when the optimizer sees only the used rows and the others are scaled by the product of those factors when
the full table is needed (an evaluation, a saved state, the end). :func:`compact_vocab` does that: measured on MiniLM
at batch 16, ~6% less time per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Below this share of rows used, the saving is worth a module swap (and the sync at each evaluation).
MAX_USED_FRACTION = 0.8


class CompactEmbedding(nn.Module):
    """The used rows of an ``nn.Embedding``, addressed by the full table's ids. ``weight`` keeps the name the
    optimizer's parameter groups match on; ``num_embeddings`` and ``padding_idx`` keep the full table's values for
    code that reads them."""

    def __init__(self, full: nn.Embedding, used: torch.Tensor) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = full.num_embeddings, full.embedding_dim, full.padding_idx
        self.used = used
        self.weight = nn.Parameter(full.weight.detach()[used].clone())
        # Ids outside the used rows map to -1: F.embedding rejects them loudly instead of reading a wrong row.
        remap = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=used.device)
        remap[used] = torch.arange(len(used), device=used.device)
        self.remap = remap
        self._padding_row = None if full.padding_idx is None else int(remap[full.padding_idx])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.remap[input_ids], self.weight, self._padding_row)


def _plain_embedding(model: nn.Module) -> nn.Embedding | None:
    """The model's input embedding when it is a plain, trainable, untied ``nn.Embedding``; None otherwise."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if type(emb) is not nn.Embedding or not emb.weight.requires_grad:
        return None
    if emb.max_norm is not None or emb.scale_grad_by_freq or emb.sparse:
        return None
    # A table shared with another module (tied output embeddings) is updated through that module too.
    sharing = sum(p is emb.weight for _, p in model.named_parameters(remove_duplicate=False))
    return emb if sharing == 1 else None


class _Swap:
    """The compact table swapped in, with the weight decay the unused rows are owed."""

    def __init__(self, model: nn.Module, full: nn.Embedding, used: torch.Tensor) -> None:
        self.model, self.full = model, full
        self.compact = CompactEmbedding(full, used)
        self.owed = 1.0  # product of (1 - lr * weight_decay) over steps not yet applied to the unused rows
        self._group: dict[str, Any] | None = None  # the optimizer's parameter group holding the compact table

    def after_step(self, optimizer: Any) -> None:
        """Record this step's decoupled weight decay (call after ``optimizer.step()``, before the scheduler's)."""
        if self._group is None:
            self._group = next(g for g in optimizer.param_groups if any(p is self.compact.weight for p in g["params"]))
        self.owed *= 1.0 - self._group["lr"] * self._group["weight_decay"]

    def sync(self) -> None:
        """Write the trained rows into the full table and apply the decay owed to the others."""
        with torch.no_grad():
            weight = self.full.weight
            # Scaling every row and then overwriting the trained ones is ~5x faster than boolean-mask indexing.
            if self.owed != 1.0:
                weight.mul_(self.owed)
                self.owed = 1.0
            weight.index_copy_(0, self.compact.used, self.compact.weight.to(weight.dtype))

    @contextlib.contextmanager
    def full_table(self) -> Iterator[None]:
        """The model with its own, up-to-date embedding inside the block (to evaluate or copy its state)."""
        self.sync()
        self.model.set_input_embeddings(self.full)
        try:
            yield
        finally:
            self.model.set_input_embeddings(self.compact)


class _NoSwap:
    def after_step(self, optimizer: Any) -> None:
        pass

    @contextlib.contextmanager
    def full_table(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def compact_vocab(model: nn.Module, token_ids: Iterable[Iterable[int]]) -> Iterator[_Swap | _NoSwap]:
    """Train ``model``'s input embedding on the rows ``token_ids`` (the training batches' ids) use.

    Build the optimizer inside the block (it must hold the compact table), call ``after_step(optimizer)`` after each
    ``optimizer.step()`` and evaluate or copy the state dict inside ``full_table()``. The model's own embedding,
    up to date, is back in place when the block ends, also on an exception. Models whose embedding is not a plain,
    untied ``nn.Embedding``, or whose texts use most of it, train as they are (the yielded object does nothing).
    """
    full = _plain_embedding(model)
    used_ids: set[int] = set()
    for ids in token_ids:
        used_ids.update(ids)
    if full is not None and used_ids and (min(used_ids) < 0 or max(used_ids) >= full.num_embeddings):
        raise ValueError(f"token ids must lie in [0, {full.num_embeddings}), found {min(used_ids)}..{max(used_ids)}: "
                         "the tokenizer does not match the model's vocabulary")
    if full is not None and full.padding_idx is not None:
        used_ids.add(full.padding_idx)  # padded batches look it up (nn.Embedding keeps it non-negative)
    if full is None or not used_ids or len(used_ids) > MAX_USED_FRACTION * full.num_embeddings:
        yield _NoSwap()
        return
    used = torch.tensor(sorted(used_ids), dtype=torch.long, device=full.weight.device)
    swap = _Swap(model, full, used)
    model.set_input_embeddings(swap.compact)
    try:
        yield swap
    finally:
        swap.sync()
        model.set_input_embeddings(full)
