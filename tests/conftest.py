"""Fixtures: tiny random BERT, RoBERTa and XLNet models with tokenizers trained here, so every family's code path is
exercised offline in seconds. The hub is switched off for the whole test run."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/datasets are imported: no test may reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "textclf" / "samples"


def _corpus() -> list[str]:
    import csv
    import json

    with open(SAMPLES / "demo" / "train.csv", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    with open(SAMPLES / "demo_multilabel" / "train.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for line in fh]
    return texts


def _trained_wordpiece(texts: list[str], specials: list[str]) -> object:
    """BERT's lower-cased WordPiece, trained on ``texts``; the caller adds its post-processor."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    return tok


def _wordpiece(texts: list[str]) -> object:
    from tokenizers import processors

    tok = _trained_wordpiece(texts, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok, {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}


def _mpnet_wordpiece(texts: list[str]) -> object:
    from tokenizers import processors

    # As all-mpnet-base-v2's: BERT's lower-cased WordPiece, RoBERTa's <s> A </s> template.
    tok = _trained_wordpiece(texts, ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "[UNK]", "pad_token": "<pad>", "mask_token": "<mask>"}


def _bytelevel_bpe(texts: list[str]) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok, {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                 "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}


def _unigram(texts: list[str]) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>"]
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>"))
    # XLNet appends <sep> <cls> at the END: its summary reads the last token.
    tok.post_processor = processors.TemplateProcessing(
        single="$A <sep> <cls>", pair="$A <sep> $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", tok.token_to_id("<sep>")), ("<cls>", tok.token_to_id("<cls>"))])
    return tok, {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<cls>", "sep_token": "<sep>",
                 "mask_token": "<mask>", "bos_token": "<s>", "eos_token": "</s>"}


def _build(folder: Path, family: str, texts: list[str]) -> Path:
    import torch
    from transformers import (
        AutoModel,
        BertConfig,
        DistilBertConfig,
        MPNetConfig,
        PreTrainedTokenizerFast,
        RobertaConfig,
        XLNetConfig,
    )

    raw, specials = {"bert": _wordpiece, "distilbert": _wordpiece, "mpnet": _mpnet_wordpiece,
                     "roberta": _bytelevel_bpe, "xlnet": _unigram}[family](texts)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=64, **specials)
    vocab, pad = tok.vocab_size, tok.pad_token_id
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if family == "bert":
        config = BertConfig(vocab_size=vocab, pad_token_id=pad, max_position_embeddings=128, **small)
    elif family == "mpnet":  # relative attention buckets as the real one's
        config = MPNetConfig(vocab_size=vocab, pad_token_id=pad, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, max_position_embeddings=130,
                             relative_attention_num_buckets=32, **small)
    elif family == "distilbert":
        config = DistilBertConfig(vocab_size=vocab, pad_token_id=pad, max_position_embeddings=128, dim=32, n_layers=2,
                                  n_heads=2, hidden_dim=64)
    elif family == "roberta":
        config = RobertaConfig(vocab_size=vocab, pad_token_id=pad, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id, max_position_embeddings=130, **small)
    else:
        config = XLNetConfig(vocab_size=vocab, d_model=32, n_layer=2, n_head=2, d_inner=64, pad_token_id=pad,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1234)  # not a seed textclf uses: the 'pretrained' weights must differ from scratch ones
    AutoModel.from_config(config).save_pretrained(folder)  # a "pretrained" encoder without a classification head
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Registered backbones ``tiny-bert``, ``tiny-roberta``, ``tiny-xlnet``, ``tiny-mpnet``: name -> model folder."""
    from textclf.backbones import Backbone, register_backbone

    root = tmp_path_factory.mktemp("tiny_models")
    texts = _corpus()
    heads = {"bert": ("classifier",), "roberta": ("classifier",), "xlnet": ("sequence_summary", "logits_proj"),
             "mpnet": ("classifier",)}
    out = {}
    for family in ("bert", "roberta", "xlnet", "mpnet"):
        folder = _build(root / f"tiny-{family}", family, texts)
        register_backbone(Backbone(f"tiny-{family}", family, local_path=lambda f=folder: f,
                                   padding_side="left" if family == "xlnet" else "right",
                                   head_modules=heads[family], lr=1e-3), overwrite=True)
        out[f"tiny-{family}"] = str(folder)
    return out


@pytest.fixture
def studies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty studies folder used as the default storage location."""
    folder = tmp_path / "studies"
    monkeypatch.setenv("TEXTCLF_STUDIES_DIR", str(folder))
    monkeypatch.delenv("TEXTCLF_STORAGE", raising=False)
    return folder


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real-data check skipped: {path} is missing (../shared/data sits beside the repo on dev machines)")
    return path
