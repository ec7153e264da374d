"""The CPU dropout used in training: its mask statistics, that it computes what the model's own attention does, and
that the model comes back unchanged after training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textclf.backbones import load_model, load_tokenizer, resolve_backbone
from textclf.cpu_train import (
    ATTENTION_NAME,
    PLAIN_ATTENTION,
    FastDropout,
    MaskSource,
    drop,
    fast_training,
    keep_mask,
    scaled_keep_mask,
)
from textclf.train import collate, encode

TEXTS = ["the delivery came late and the box was crushed", "great sound, comfortable, worth it",
         "meh", "I would not buy these headphones again, the battery died after a week of light use"]


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_keeps_one_minus_p_and_is_seeded(p: float) -> None:
    torch.manual_seed(0)
    mask = keep_mask((1000, 999), p)
    assert mask.shape == (1000, 999) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(1 - p, abs=0.002)  # 999,000 draws: std ~0.0005
    torch.manual_seed(0)
    assert torch.equal(keep_mask((1000, 999), p), mask)
    assert not torch.equal(keep_mask((1000, 999), p), mask)


def test_drop_scales_what_it_keeps_and_is_the_identity_when_off() -> None:
    x = torch.ones(200, 500)
    out = drop(x, 0.25)
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted dropout keeps the expectation
    assert drop(x, 0.25, training=False) is x and drop(x, 0.0) is x
    assert torch.equal(drop(x, 1.0), torch.zeros_like(x))
    x.requires_grad_()
    drop(x, 0.25).sum().backward()
    assert torch.unique(x.grad).tolist() == [0.0, pytest.approx(1 / 0.75)]  # the same mask, scaled, backwards


def _model_and_batch(name: str, **config: float) -> tuple[object, dict]:
    spec = resolve_backbone(name)
    tok = load_tokenizer(spec)
    model = load_model(spec, num_labels=3, multi_label=False, pad_token_id=tok.pad_token_id, seed=0)
    for key, value in config.items():
        setattr(model.config, key, value)
    inputs, _ = collate(tok, encode(tok, TEXTS, [0, 1, 2, 0], 64), range(len(TEXTS)), "single_label", 3, "cpu")
    return model, inputs


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta"])
def test_rerouted_attention_gives_the_models_own_outputs_and_is_undone(tiny_models: dict, name: str) -> None:
    model, inputs = _model_and_batch(name)
    model.eval()
    before = model(**inputs).logits
    modules = [type(m) for m in model.modules()]
    with torch.no_grad(), fast_training(model):
        assert model.config._attn_implementation == ATTENTION_NAME
        assert any(isinstance(m, FastDropout) for m in model.modules())
        inside = model(**inputs).logits  # padded batch: the additive mask must hide the padding as sdpa's does
    assert torch.allclose(inside, before, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"
    assert [type(m) for m in model.modules()] == modules


def test_attention_probabilities_are_dropped_in_training(tiny_models: dict) -> None:
    # Only attention dropout on: outputs vary between two training passes, and match eval with p = 0.
    model, inputs = _model_and_batch("tiny-bert")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for layer in model.bert.encoder.layer:
        layer.attention.self.dropout.p = 0.5
    model.train()
    torch.manual_seed(0)
    with torch.no_grad(), fast_training(model):
        first, second = model(**inputs).logits, model(**inputs).logits
    assert not torch.allclose(first, second)
    for layer in model.bert.encoder.layer:
        layer.attention.self.dropout.p = 0.0
    with torch.no_grad(), fast_training(model):
        no_drop = model(**inputs).logits
    model.eval()
    with torch.no_grad():
        assert torch.allclose(no_drop, model(**inputs).logits, atol=1e-5)


def test_other_attention_is_kept_and_modules_come_back_after_an_error(tiny_models: dict) -> None:
    model, inputs = _model_and_batch("tiny-xlnet")
    implementation = model.config._attn_implementation
    originals = [m for m in model.modules() if type(m) is torch.nn.Dropout]
    assert originals
    with pytest.raises(RuntimeError, match="pruned"), fast_training(model):  # how a pruned trial leaves training
        assert model.config._attn_implementation == implementation  # XLNet's own attention: modules only
        assert not any(type(m) is torch.nn.Dropout for m in model.modules())
        model.train()
        assert torch.isfinite(model(**inputs).logits).all()
        raise RuntimeError("pruned")
    assert [m for m in model.modules() if type(m) is torch.nn.Dropout] == originals


@pytest.mark.parametrize("model_type", [*sorted(PLAIN_ATTENTION), "albert", "deberta-v2"])
def test_every_rerouted_family_computes_its_own_attention(model_type: str) -> None:
    # Families on the list must give their own outputs through the copy; others keep their attention untouched.
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if model_type == "distilbert":
        config = AutoConfig.for_model(model_type, vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    else:
        config = AutoConfig.for_model(model_type, vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    ids = torch.randint(5, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        with fast_training(model):
            rerouted = model.config._attn_implementation == ATTENTION_NAME
            patched = [m for m in model.modules() if "forward" in vars(m)]
            inside = model(input_ids=ids, attention_mask=mask).logits
    assert rerouted == (model_type in PLAIN_ATTENTION)
    # One fused projection per layer where attention has query/key/value Linears (DistilBERT names them q_lin...),
    # and the last layer computing its first token alone where the classifier reads nothing else.
    fused = [m for m in patched if "SelfAttention" in type(m).__name__]
    assert len(fused) == (2 if rerouted and model_type != "distilbert" else 0)
    first_token = [m for m in patched if m not in fused]
    assert first_token == ([model.base_model.encoder.layer[-1]] if fused else [])
    assert torch.allclose(inside, before, atol=1e-5)  # the same logits, from the first token's output alone


def test_the_last_layer_keeps_every_token_where_the_head_reads_them_all() -> None:
    # A token classifier reads every position: its last layer must not be cut to the first token.
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.for_model("bert", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).eval()
    ids = torch.randint(5, 100, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with fast_training(model):
            assert "forward" not in vars(model.bert.encoder.layer[-1])
            inside = model(input_ids=ids).logits
    assert inside.shape == before.shape == (2, 7, 2) and torch.allclose(inside, before, atol=1e-5)


def test_mask_source_keeps_one_minus_p_and_repeats_for_a_seed() -> None:
    mask = keep_mask((1000, 999), 0.1, source=MaskSource(7))
    assert mask.shape == (1000, 999) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(0.9, abs=0.002)
    assert torch.equal(keep_mask((1000, 999), 0.1, source=MaskSource(7)), mask)
    assert not torch.equal(keep_mask((1000, 999), 0.1, source=MaskSource(8)), mask)
    out = drop(torch.ones(300, 300, requires_grad=True), 0.5, source=MaskSource(1))
    assert sorted(torch.unique(out).tolist()) == [0.0, 2.0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_scaled_mask_is_the_keep_mask_times_the_scale_in_every_float_dtype(dtype: torch.dtype) -> None:
    # bfloat16 is built from its bit pattern (numpy has no bfloat16): it must still read as the rounded scale.
    got = scaled_keep_mask((300, 301), 0.2, dtype, source=MaskSource(3))
    keep = keep_mask((300, 301), 0.2, source=MaskSource(3))
    assert got.dtype == dtype and got.shape == (300, 301)
    assert torch.equal(got, keep.to(dtype) * torch.tensor(1 / 0.8, dtype=dtype))
    torch.manual_seed(0)  # without a source (torch's generator, as on CUDA): the same contract
    fallback = scaled_keep_mask((300, 301), 0.2, dtype)
    assert fallback.dtype == dtype and set(fallback.unique().tolist()) == {0.0, torch.tensor(1 / 0.8, dtype=dtype).item()}


def _grads(model: torch.nn.Module, inputs: dict) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**inputs).logits.square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta"])
def test_fused_projection_trains_the_same_weights_and_is_undone(tiny_models: dict, name: str) -> None:
    # Dropout off, so the two passes are comparable: the same loss gradients for every parameter, query, key and
    # value weights included (they reach the fused matmul through a concatenation).
    model, inputs = _model_and_batch(name, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    expected = _grads(model, inputs)
    with fast_training(model):
        patched = [m for m in model.modules() if "forward" in vars(m)]
        # One per layer's self-attention, and the last layer, which computes the first token's output alone.
        assert len(patched) == model.config.num_hidden_layers + 1
        assert model.base_model.encoder.layer[-1] in patched
        got = _grads(model, inputs)
    assert not any("forward" in vars(m) for m in model.modules())
    assert got.keys() == expected.keys() and any(".query." in n for n in got)
    for n, g in expected.items():
        assert torch.allclose(got[n], g, rtol=1e-4, atol=1e-6), n


def test_seeded_training_passes_repeat_their_dropout(tiny_models: dict) -> None:
    model, inputs = _model_and_batch("tiny-bert", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model.train()
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        with torch.no_grad(), fast_training(model):
            outputs.append(model(**inputs).logits)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])


def test_tune_runtime_sizes_onednn_cache_and_keeps_the_users_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from textclf.train import ONEDNN_KERNEL_CACHE, tune_runtime

    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        monkeypatch.delenv(name, raising=False)
    tune_runtime.__wrapped__()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_KERNEL_CACHE)
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "512")  # the older name oneDNN also reads
    tune_runtime.__wrapped__()
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ


_CYCLE_SHAPES = """
import torch
from textclf.train import tune_runtime
if TUNE:
    tune_runtime()
w = torch.randn(64, 32, dtype=torch.bfloat16)
for round_ in range(2):
    for rows in range(1, 1201):  # 1,200 shapes, more than oneDNN's default cache of 1,024 kernels
        torch.randn(rows, 32, dtype=torch.bfloat16) @ w.t()
    print("ROUND_END", flush=True)
"""


def _kernel_misses(tune: bool) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PRIMITIVE_CACHE_CAPACITY")}
    env["ONEDNN_VERBOSE"] = "profile_create"
    out = subprocess.run([sys.executable, "-c", f"TUNE = {tune}\n{_CYCLE_SHAPES}"], env=env, capture_output=True,
                         text=True, timeout=120, check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    return [chunk.count("create:cache_miss") for chunk in out.split("ROUND_END")[:2]]


def test_an_epochs_shapes_stay_compiled_once_tuned() -> None:
    """Cycling through 1,200 matmul shapes twice: by default oneDNN recompiles every kernel the second time
    (least-recently-used eviction); after tune_runtime() it compiles none."""
    first, second = _kernel_misses(tune=True)
    if first == 0:
        pytest.skip("oneDNN does not run bf16 matmuls on this CPU")
    assert first > 1100 and second == 0
    assert _kernel_misses(tune=False)[1] >= 1000  # the default cache does thrash: the test can tell the difference


def _clip_run(fused: bool, loss_scale: float, ours: bool) -> tuple[torch.Tensor, list[float]]:
    from textclf.train import clipped_step

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 3))
    x, y = torch.randn(8, 16), torch.randint(0, 3, (8,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused)
    norms = []
    for _ in range(4):
        (torch.nn.functional.cross_entropy(model(x), y) * loss_scale).backward()
        if ours:
            norms.append(clipped_step(optimizer, 1.0))
        else:
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
            optimizer.step()
        optimizer.zero_grad()
    assert not hasattr(optimizer, "grad_scale")  # not left behind for the next step
    return torch.cat([p.detach().flatten() for p in model.parameters()]), norms


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("loss_scale", [0.01, 100.0])  # gradients under the limit (no clipping), far over it
def test_clipped_step_trains_as_clip_grad_norm_then_step(fused: bool, loss_scale: float) -> None:
    theirs, their_norms = _clip_run(fused, loss_scale, ours=False)
    ours, our_norms = _clip_run(fused, loss_scale, ours=True)
    assert our_norms == pytest.approx(their_norms, rel=1e-5)
    assert (max(our_norms) > 1.0) == (loss_scale > 1.0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_clipped_step_stops_on_a_non_finite_gradient() -> None:
    from textclf.train import TrainingDiverged, clipped_step

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], fused=True)
    weight.grad = torch.tensor([1.0, float("nan"), 0.0])
    with pytest.raises(TrainingDiverged, match="nan"):
        clipped_step(optimizer, 1.0)
    assert torch.equal(weight.detach(), torch.ones(3))  # no step taken


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta", "tiny-xlnet", "tiny-mpnet"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # a boolean mask, an additive one
def test_one_projection_attention_for_prediction_gives_the_same_logits(tiny_models: dict, name: str,
                                                                       attention: str) -> None:
    import copy

    from textclf.predict import fuse_attention_projections

    model, inputs = _model_and_batch(name)
    model.eval()
    own = name in ("tiny-xlnet", "tiny-mpnet")  # XLNet's and MPNet's attention are their own (relative positions)
    if not own:
        model.set_attn_implementation(attention)
    fused = copy.deepcopy(model)
    changed = fuse_attention_projections(fused)
    assert changed == (0 if own else model.config.num_hidden_layers)
    with torch.inference_mode():
        torch.testing.assert_close(fused(**inputs).logits, model(**inputs).logits, atol=1e-5, rtol=1e-4)
    other = copy.deepcopy(model)
    other.config._attn_implementation = "flex_attention"  # masks this forward would not understand: left alone
    assert fuse_attention_projections(other) == 0
    if changed:
        # Training mode takes the original projections: their gradients, not the fused copy's constant.
        fused.train()
        fused(**inputs).logits.sum().backward()
        assert all(m.query.weight.grad is not None for m in fused.modules() if hasattr(m, "qkv_weight"))


# ------------------------------------------------------------------------------------------------------ self-checks
@pytest.fixture()
def fresh_verdicts() -> object:
    from textclf import patch_check

    patch_check.forget()  # verdicts are per process: these tests make patches that differ from the stock code
    yield patch_check
    patch_check.forget()


def _off_by_half(real: object) -> object:
    def wrong(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)  # type: ignore[operator]
        return (out[0] * 1.5, *out[1:]) if isinstance(out, tuple) else out * 1.5

    return wrong


def test_an_attention_patch_that_differs_from_transformers_is_skipped_and_training_goes_on(
        tiny_models: dict, fresh_verdicts: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.cpu_train as cpu_train
    from textclf.patch_check import PatchSkipped

    monkeypatch.setattr(cpu_train, "_fused_self_attention", _off_by_half(cpu_train._fused_self_attention))
    model, inputs = _model_and_batch("tiny-bert")
    model.eval()
    before = model(**inputs).logits
    with pytest.warns(PatchSkipped, match="fused attention does not match the stock code") as caught, \
            torch.no_grad(), fast_training(model):
        assert model.config._attn_implementation == "sdpa"  # not rerouted
        assert not any("forward" in m.__dict__ for m in model.modules())
        assert any(isinstance(m, FastDropout) for m in model.modules())  # the dropout swap checked out
        torch.testing.assert_close(model(**inputs).logits, before)
    assert len([w for w in caught if issubclass(w.category, PatchSkipped)]) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PatchSkipped)  # one warning per process and kind, not one per trial
        with fast_training(model):
            pass

    from textclf.train import TrainConfig, train

    spec = resolve_backbone("tiny-bert")
    tok = load_tokenizer(spec)
    enc = encode(tok, TEXTS, [0, 1, 2, 0], 64)
    result = train(model, tok, enc, enc, TrainConfig(epochs=1, batch_size=2, precision="fp32"), task="single_label",
                   head_prefixes=("classifier",))
    assert result.steps == 2 and "accuracy" in result.metrics


def test_a_first_token_layer_that_differs_is_skipped_alone(tiny_models: dict, fresh_verdicts: object,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.cpu_train as cpu_train
    from textclf.patch_check import PatchSkipped

    monkeypatch.setattr(cpu_train, "_first_token_layer", _off_by_half(cpu_train._first_token_layer))
    model, _ = _model_and_batch("tiny-bert")
    last = cpu_train.first_token_layer(model)
    with pytest.warns(PatchSkipped, match="first-token last layer"), fast_training(model):
        assert model.config._attn_implementation == ATTENTION_NAME  # the fused attention checked out and is on
        assert "forward" not in last.__dict__


def test_a_dropout_that_differs_from_torchs_is_not_swapped_in(tiny_models: dict, fresh_verdicts: object,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.cpu_train as cpu_train
    from textclf.patch_check import PatchSkipped

    real = cpu_train.drop
    def wrong(x: torch.Tensor, p: float, training: bool = True, source: object = None) -> torch.Tensor:
        return real(x, p, training, source) * (0.9 if training and p else 1.0)  # scales what it keeps wrongly

    monkeypatch.setattr(cpu_train, "drop", wrong)
    model, _ = _model_and_batch("tiny-bert")
    with pytest.warns(PatchSkipped, match="fast dropout"), fast_training(model):
        assert not any(isinstance(m, FastDropout) for m in model.modules())


def test_a_prediction_fusion_that_differs_is_undone(tiny_models: dict, fresh_verdicts: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.predict as predict
    from textclf.patch_check import PatchSkipped

    monkeypatch.setattr(predict, "_one_projection_attention", _off_by_half(predict._one_projection_attention))
    model, _ = _model_and_batch("tiny-bert")
    model.eval()
    with pytest.warns(PatchSkipped, match="one-projection attention"):
        assert predict.fuse_attention_projections(model) == 0
    assert not any(hasattr(m, "qkv_weight") or "forward" in m.__dict__ for m in model.modules())


def test_clipping_falls_back_to_torchs_when_the_grad_scale_hand_off_differs(fresh_verdicts: object,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import textclf.train as train_mod
    from textclf.patch_check import PatchSkipped

    real = train_mod._step_scaled
    monkeypatch.setattr(train_mod, "_step_scaled", lambda optimizer, scale: real(optimizer, scale * 2))
    params = [torch.nn.Parameter(torch.linspace(-1, 1, 8)) for _ in range(2)]
    optimizers = [torch.optim.AdamW([p], lr=0.1, fused=True) for p in params]
    with pytest.warns(PatchSkipped, match="clipping by grad_scale"):
        for grad in (torch.linspace(5, -3, 8), torch.linspace(0.01, -0.02, 8), torch.linspace(-7, 2, 8)):
            for p in params:
                p.grad = grad.clone()
            torch.nn.utils.clip_grad_norm_([params[0]], 1.0)
            optimizers[0].step()
            train_mod.clipped_step(optimizers[1], 1.0)
    torch.testing.assert_close(params[1].detach(), params[0].detach())  # torch's clipping took over


def test_mpnet_trains_with_fast_dropout_and_its_own_attention(tiny_models: dict) -> None:
    # MPNet adds a relative position bias inside its own attention module (not transformers' attention interface):
    # the fused projection and the first-token layer step aside; the dropout swap still applies.
    model, inputs = _model_and_batch("tiny-mpnet")
    model.eval()
    before = model(**inputs).logits
    with torch.no_grad(), fast_training(model):
        assert any(isinstance(m, FastDropout) for m in model.modules())
        assert model.config._attn_implementation != ATTENTION_NAME
        inside = model(**inputs).logits
    assert torch.allclose(inside, before, atol=1e-6)
    assert not any(isinstance(m, FastDropout) for m in model.modules())  # undone
