"""Checks on the real datasets and tokenizers in ../shared (skipped, with the reason, where it is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA, shared_data

from textclf.data import load_data

SIZES = {"sst2": (6920, 872, 1821, 2), "trec6": (4952, 500, 500, 6), "emotion": (16000, 2000, 2000, 6),
         "sms_spam": (4460, 557, 557, 2), "banking77": (9003, 1000, 3080, 77), "ag_news": (6000, 800, 800, 4),
         "goemotions": (43410, 5426, 5427, 28)}


@pytest.mark.parametrize("name", list(SIZES))
def test_shared_dataset_loads_with_documented_sizes(name: str) -> None:
    data = load_data(str(shared_data(name)))
    n_train, n_val, n_test, n_classes = SIZES[name]
    assert (len(data.train), len(data.validation), len(data.test or [])) == (n_train, n_val, n_test)
    assert data.num_labels == n_classes
    assert data.task == ("multi_label" if name == "goemotions" else "single_label")


@pytest.mark.parametrize(("folder", "side"), [("roberta-base", "right"), ("xlnet-base-cased", "left")])
def test_real_tokenizers_get_the_family_padding_side(folder: str, side: str) -> None:
    from textclf.backbones import load_tokenizer, resolve_backbone

    path = SHARED_DATA.parent / "tokenizers" / folder
    if not path.is_dir():
        pytest.skip(f"{path} is missing (../shared/tokenizers sits beside the repo on dev machines)")
    spec = resolve_backbone(f"scratch:{path}")  # the real architecture with random weights: no weights needed
    tok = load_tokenizer(spec)
    assert tok.padding_side == side
    batch = tok(["a", "a much longer sentence here"], padding=True)
    pad_at = 0 if side == "left" else -1
    assert batch["input_ids"][0][pad_at] == tok.pad_token_id


def test_missing_shared_folder_skips_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", Path("/nonexistent/shared/data"))
    with pytest.raises(pytest.skip.Exception, match="is missing"):
        conftest.shared_data("sst2")
