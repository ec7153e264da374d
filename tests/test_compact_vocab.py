"""Training only the used vocabulary rows: the same weights as training the whole table, the model's own embedding
back afterwards, and no swap where it would not be the same computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import textclf.compact_vocab as cv
from textclf.backbones import head_prefixes, load_model, load_tokenizer, resolve_backbone
from textclf.train import TrainConfig, encode, train

TEXTS = ["the delivery came late and the box was crushed", "great sound, comfortable, worth it",
         "meh", "I would not buy these headphones again, the battery died after a week of light use",
         "fine", "awful, just awful", "love it", "it broke on day two"]
LABELS = [0, 1, 2, 1, 2, 0, 1, 0]


def _train(name: str, monkeypatch: pytest.MonkeyPatch, compact: bool) -> tuple[dict, list[type]]:
    monkeypatch.setattr(cv, "MAX_USED_FRACTION", 0.8 if compact else 0.0)
    spec = resolve_backbone(name)
    tok = load_tokenizer(spec)
    model = load_model(spec, num_labels=3, multi_label=False, pad_token_id=tok.pad_token_id, seed=0)
    enc = encode(tok, TEXTS, LABELS, 64)
    # Two epochs, evaluated twice in each: the full table is rebuilt mid-training and training goes on after it.
    cfg = TrainConfig(lr=1e-3, batch_size=3, epochs=2, weight_decay=0.1, evals_per_epoch=2, precision="fp32", seed=3)
    seen: list[type] = []
    train(model, tok, enc, enc, cfg, task="single_label", head_prefixes=head_prefixes(model, spec),
          on_step=lambda step, total: seen.append(type(model.get_input_embeddings())))
    return {k: v.clone() for k, v in model.state_dict().items()}, seen


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta", "tiny-xlnet"])
def test_training_the_used_rows_gives_the_weights_training_the_whole_table_does(
        tiny_models: dict, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    dense, dense_seen = _train(name, monkeypatch, compact=False)
    compact, compact_seen = _train(name, monkeypatch, compact=True)
    assert set(dense_seen) == {nn.Embedding} and set(compact_seen) == {cv.CompactEmbedding}
    assert dense.keys() == compact.keys()
    for key in dense:
        assert torch.allclose(dense[key], compact[key], rtol=1e-4, atol=1e-6), key
    spec = resolve_backbone(name)
    initial = load_model(spec, num_labels=3, multi_label=False, seed=0).get_input_embeddings().weight
    key = next(k for k in dense if k.endswith("embeddings.weight") or k.endswith("word_embedding.weight"))
    tok = load_tokenizer(spec)
    unused = torch.ones(len(initial), dtype=torch.bool)
    unused[sorted({i for t in encode(tok, TEXTS, LABELS, 64).features for i in t["input_ids"]} | {tok.pad_token_id})] = False
    # The rows no text uses were only decayed: all scaled by one factor a little below 1.
    before, after = initial[unused].detach(), compact[key][unused]
    factor = float((after * before).sum() / (before * before).sum())
    assert unused.sum() > 100 and 0.9 < factor < 1.0
    assert torch.allclose(after, before * factor, atol=1e-6)


def _toy(vocab: int = 50, tie: bool = False) -> nn.Module:
    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, 4, padding_idx=0)
            self.out = nn.Linear(4, vocab, bias=False)
            if tie:
                self.out.weight = self.emb.weight

        def get_input_embeddings(self) -> nn.Module:
            return self.emb

        def set_input_embeddings(self, module: nn.Module) -> None:
            self.emb = module

    torch.manual_seed(0)
    return Toy()


def test_the_full_table_comes_back_up_to_date_after_an_exception() -> None:
    model = _toy()
    original = model.emb
    start = original.weight.detach().clone()
    with pytest.raises(RuntimeError, match="stop"), cv.compact_vocab(model, [[1, 2, 3]]) as swap:
        assert isinstance(model.emb, cv.CompactEmbedding) and model.emb.weight.shape == (4, 4)  # 1, 2, 3 and padding
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
        model.emb(torch.tensor([[1, 2, 0]])).sum().backward()
        opt.step()
        swap.after_step(opt)
        raise RuntimeError("stop")
    assert model.emb is original
    weight = original.weight.detach()
    assert torch.allclose(weight[4:], start[4:] * (1 - 0.1 * 0.5))  # unused rows: the weight decay alone
    assert not torch.allclose(weight[1:3], start[1:3] * (1 - 0.1 * 0.5))  # trained rows moved by their gradients
    assert torch.equal(weight[0], start[0] * (1 - 0.1 * 0.5))  # padding gets no gradient, as nn.Embedding's


def test_ids_outside_the_table_are_an_error_and_unsuitable_tables_are_left_alone() -> None:
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50\), found 1..50"), \
            cv.compact_vocab(_toy(), [[1, 50]]):
        pass
    for model, ids in ((_toy(tie=True), [[1, 2]]), (_toy(), [list(range(45))])):  # tied; 90% of rows used
        emb = model.emb
        with cv.compact_vocab(model, ids) as swap:
            assert model.emb is emb and isinstance(swap, cv._NoSwap)
