"""Looking inside a classifier: attention maps, what the classification token attends to, attention rollout across
layers, and gradient × input saliency as a second opinion.

transformers defaults to SDPA attention, which returns no attention weights, so models are switched to the eager
implementation first. The classification token is the first one for BERT/RoBERTa and the LAST one for XLNet (which
pads on the left); :func:`summary_index` knows which. Every piece of user text is HTML-escaped before rendering.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from textclf.errors import DataError
from textclf.safety import plot_text

SUBWORD_MARKS = ("##", "Ġ", "▁", "Ċ")


@dataclass
class AttentionView:
    tokens: list[str]
    attentions: np.ndarray          # [layers, heads, seq, seq]
    summary_index: int              # position of the token the classifier reads
    truncated: bool                 # True when the text was longer than max_length tokens
    n_tokens: int                   # tokens in the full, untruncated text
    probabilities: dict[str, float]
    label: str

    @property
    def n_layers(self) -> int:
        return int(self.attentions.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.attentions.shape[1])


def summary_index(model: Any, tokenizer: Any, n_tokens: int) -> int:
    """XLNet-style models (left padding, summary from the last token) read the last position; others the first."""
    last = getattr(model.config, "summary_type", None) == "last" or tokenizer.padding_side == "left"
    return n_tokens - 1 if last else 0


def ensure_eager(model: Any) -> Any:
    """Attention weights exist only with the eager implementation (SDPA fuses them away)."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    return model


def _encode(tokenizer: Any, text: str, max_length: int) -> tuple[dict[str, Any], int]:
    if not isinstance(text, str) or not text.strip():
        raise DataError("the text is empty: type a sentence to look inside the model")
    full = len(tokenizer(text, truncation=False)["input_ids"])
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    return enc, full


def attention_view(model: Any, tokenizer: Any, text: str, label_names: list[str], *, multi_label: bool = False,
                   max_length: int = 128) -> AttentionView:
    import torch

    from textclf.metrics import softmax_or_sigmoid

    ensure_eager(model)
    model.eval()
    enc, full = _encode(tokenizer, text, max_length)
    with torch.inference_mode():
        out = model(**enc, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise DataError(f"{type(model).__name__} returned no attention weights; it cannot be shown here")
    att = np.stack([a[0].float().numpy() for a in out.attentions])  # [layers, heads, seq, seq] for the one text
    ids = enc["input_ids"][0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    probs = softmax_or_sigmoid(out.logits.float().numpy(), "multi_label" if multi_label else "single_label")[0]
    order = np.argsort(-probs)
    return AttentionView(tokens=tokens, attentions=att, summary_index=summary_index(model, tokenizer, len(tokens)),
                         truncated=full > len(tokens), n_tokens=full,
                         probabilities={label_names[i]: float(probs[i]) for i in order}, label=label_names[order[0]])


def rollout(attentions: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): head-averaged attention plus the residual path, multiplied through
    the layers. Row i says how much each input token flows into position i at the top."""
    n = attentions.shape[-1]
    result = np.eye(n)
    for layer in attentions:
        a = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(n)
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result


def saliency(model: Any, tokenizer: Any, text: str, target: int, *, max_length: int = 128) -> np.ndarray:
    """|gradient × input| of the target logit with respect to each token's input embedding, scaled to max 1."""
    import torch

    model.eval()
    enc, _ = _encode(tokenizer, text, max_length)
    embeds = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    inputs = {k: v for k, v in enc.items() if k != "input_ids"}
    with torch.enable_grad():
        logits = model(inputs_embeds=embeds, **inputs).logits
        logits[0, target].backward()
    assert embeds.grad is not None  # backward just filled it
    scores = (embeds.grad * embeds).sum(-1).abs()[0].detach().float().numpy()
    return scores / scores.max() if scores.max() > 0 else scores


# ------------------------------------------------------------------------------------------------------ drawing
def clean_token(token: str) -> str:
    for mark in SUBWORD_MARKS:
        token = token.replace(mark, "" if mark == "##" else " ")
    return token


def _check_layer_head(view: AttentionView, layer: int, head: int | None) -> None:
    if not 0 <= layer < view.n_layers:
        raise DataError(f"layer must be between 0 and {view.n_layers - 1}, got {layer}")
    if head is not None and not 0 <= head < view.n_heads:
        raise DataError(f"head must be between 0 and {view.n_heads - 1}, got {head}")


def heatmap(view: AttentionView, layer: int, head: int | None = None, height: int = 520) -> Any:
    """tokens × tokens attention of one head (or the mean of all heads when ``head`` is None)."""
    return heatmaps([("", view, layer, head)], height=height)


def heatmaps(views: list[tuple[str, AttentionView, int, int | None]], height: int = 520) -> Any:
    """One tokens × tokens heatmap per (model name, view, layer, head), side by side, each titled with its model,
    layer and head (the mean of all heads when head is None), on one colour scale."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    for _, view, layer, head in views:
        _check_layer_head(view, layer, head)
    titles = [f"{plot_text(name) + ': ' if name else ''}layer {layer}, "
              f"{'mean of heads' if head is None else f'head {head}'}" for name, _, layer, head in views]
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=titles, horizontal_spacing=0.12)
    top = max(float((v.attentions[lay].mean(axis=0) if hd is None else v.attentions[lay, hd]).max())
              for _, v, lay, hd in views)
    for col, (_, view, layer, head) in enumerate(views, start=1):
        z = view.attentions[layer].mean(axis=0) if head is None else view.attentions[layer, head]
        # Unique ticks even for repeated tokens; escaped, since Plotly reads tags (links too) in tick labels.
        labels = [f"{i}:{plot_text(clean_token(t))}" for i, t in enumerate(view.tokens)]
        fig.add_trace(go.Heatmap(z=z, x=labels, y=labels, colorscale="Viridis", zmin=0, zmax=top,
                                 showscale=col == len(views), colorbar={"title": {"text": "weight"}},
                                 hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text="attended token", tickangle=-60, row=1, col=col)
    fig.update_yaxes(title_text="attending token", row=1, col=1)
    fig.update_layout(title={"text": "Attention (tokens × tokens)", "x": 0.01}, height=height,
                      template="plotly_white", margin={"l": 90, "r": 20, "t": 70, "b": 90})
    return fig


def text_html(tokens: list[str], weights: np.ndarray, *, title: str, color: str = "76,120,168",
              skip: tuple[int, ...] = ()) -> str:
    """The text with each token's background shaded by its weight. All token text is HTML-escaped."""
    w = np.asarray(weights, dtype=float).copy()
    for i in skip:
        w[i] = 0.0
    top = w.max() if w.size and w.max() > 0 else 1.0
    spans = []
    for i, (tok, weight) in enumerate(zip(tokens, w, strict=True)):
        if i in skip:
            continue
        alpha = min(1.0, weight / top)
        spans.append(f'<span title="{weight:.3f}" style="background: rgba({color},{alpha:.2f}); padding: 1px 2px; '
                     f'border-radius: 3px">{html.escape(clean_token(tok))}</span>')
    # The colour scale: shading is relative to this strip's largest weight (hover a token for its value).
    scale = (f'<span style="font-size:0.8em; color:#666; margin-left:8px">0 <span style="display:inline-block; '
             f'width:80px; height:0.8em; vertical-align:middle; background:linear-gradient(to right, '
             f'rgba({color},0), rgba({color},1))"></span> {top:.3f}</span>')
    return (f'<div class="textclf-attn"><div style="font-weight:600; margin-bottom:4px">{html.escape(title)}{scale}'
            f'</div><div style="line-height:2; font-size:1.05em">{"".join(spans)}</div></div>')


def special_positions(tokenizer: Any, tokens: list[str]) -> tuple[int, ...]:
    specials = set(tokenizer.all_special_tokens)
    return tuple(i for i, t in enumerate(tokens) if t in specials)
