"""Attention views on every family: eager switch, summary token position, rollout, saliency, escaped HTML."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.attention import attention_view, heatmap, rollout, saliency, special_positions, text_html
from textclf.backbones import load_model, load_tokenizer, resolve_backbone
from textclf.errors import DataError

LABELS = ["complaint", "praise", "question"]


def loaded(name: str) -> tuple[object, object]:
    spec = resolve_backbone(name)
    tok = load_tokenizer(spec)
    model = load_model(spec, num_labels=3, multi_label=False, id2label=dict(enumerate(LABELS)),
                       pad_token_id=tok.pad_token_id, seed=0)
    return model, tok


@pytest.mark.parametrize(("name", "summary_at_end"), [("tiny-bert", False), ("tiny-roberta", False), ("tiny-xlnet", True),
                                                     ("tiny-mpnet", False)])
def test_attention_view_per_family(tiny_models: dict, name: str, summary_at_end: bool) -> None:
    model, tok = loaded(name)
    view = attention_view(model, tok, "the headphones broke after two days", LABELS)
    n = len(view.tokens)
    assert view.attentions.shape == (2, 2, n, n)
    assert np.allclose(view.attentions.sum(-1), 1.0, atol=1e-4)  # every row is a distribution
    assert view.summary_index == (n - 1 if summary_at_end else 0)
    special = view.tokens[view.summary_index]
    assert special == ("<cls>" if summary_at_end else tok.cls_token)
    assert sum(view.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert model.config._attn_implementation == "eager"


def test_rollout_rows_are_distributions_and_identity_for_one_layer_of_self_attention() -> None:
    att = np.zeros((1, 2, 3, 3))
    att[0, :, np.arange(3), np.arange(3)] = 1.0  # every token attends to itself only
    assert np.allclose(rollout(att), np.eye(3))
    rand = np.random.default_rng(0).random((4, 2, 5, 5))
    rand /= rand.sum(-1, keepdims=True)
    assert np.allclose(rollout(rand).sum(-1), 1.0)


def test_saliency_and_truncation(tiny_models: dict) -> None:
    model, tok = loaded("tiny-bert")
    long_text = "the delivery was late " * 40
    view = attention_view(model, tok, long_text, LABELS, max_length=16)
    assert view.truncated and len(view.tokens) == 16 and view.n_tokens > 16
    sal = saliency(model, tok, "is it dishwasher safe?", target=2)
    assert sal.max() == pytest.approx(1.0) and (sal >= 0).all()


def test_heatmap_and_html_escape_user_text(tiny_models: dict) -> None:
    model, tok = loaded("tiny-roberta")
    payload = "<img src=x onerror=alert(1)> <script>alert(2)</script>"
    view = attention_view(model, tok, payload, LABELS)
    fig = heatmap(view, layer=1, head=0)
    assert len(fig.data[0].x) == len(view.tokens) and fig.layout.height
    html_out = text_html(view.tokens, view.attentions[-1].mean(0)[view.summary_index], title=payload,
                         skip=special_positions(tok, view.tokens))
    assert "<script" not in html_out and "<img" not in html_out
    assert "&lt;script&gt;" in html_out or "&lt;" in html_out
    with pytest.raises(DataError, match="layer must be between 0 and 1"):
        heatmap(view, layer=5)


def test_empty_text_is_refused(tiny_models: dict) -> None:
    model, tok = loaded("tiny-bert")
    with pytest.raises(DataError, match="empty"):
        attention_view(model, tok, "   ", LABELS)
