"""Architecture families: which template, config and model classes serve a model name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.core.errors import Unprocessable

# Every device a generated suite may target. The suite itself drives the torch devices
# (cpu, cuda, rocm, mps) and skips, with a reason, on the others when no backend is present.
ALL_HARDWARE: tuple[str, ...] = ("cpu", "cuda", "rocm", "mps", "openvino", "qnn", "webnn", "webgpu")
_TORCH_HARDWARE = ("cpu", "cuda", "rocm", "mps", "openvino")


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Family:
    """One architecture family and everything its template needs to know."""

    name: str
    alias: str
    description: str
    template: str
    example_model: str
    model_type: str
    config_class: str
    model_class: str
    auto_class: str
    hardware: tuple[str, ...]
    tiny_config: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Return the family as plain JSON-ready data (for `GET /templates`)."""
        return {
            "name": self.name,
            "alias": self.alias,
            "description": self.description,
            "template": self.template,
            "example_model": self.example_model,
            "model_type": self.model_type,
            "config_class": self.config_class,
            "model_class": self.model_class,
            "auto_class": self.auto_class,
            "hardware": list(self.hardware),
        }


_TEXT_TINY = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2}
_HEADS = {"num_attention_heads": 4, "intermediate_size": 37}
_VISION_TINY = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2}

_FAMILIES: tuple[Family, ...] = (
    Family(
        name="encoder-only",
        alias="bert",
        description="Text encoders (BERT, RoBERTa, DistilBERT, ...): hidden states per token.",
        template="encoder_only.py.j2",
        example_model="bert-base-uncased",
        model_type="bert",
        config_class="BertConfig",
        model_class="BertModel",
        auto_class="AutoModel",
        hardware=(*_TORCH_HARDWARE, "qnn", "webnn", "webgpu"),
        tiny_config=_frozen({**_TEXT_TINY, **_HEADS}),
    ),
    Family(
        name="decoder-only",
        alias="gpt2",
        description="Causal language models (GPT-2, OPT, Llama, ...): next-token logits.",
        template="decoder_only.py.j2",
        example_model="gpt2",
        model_type="gpt2",
        config_class="GPT2Config",
        model_class="GPT2LMHeadModel",
        auto_class="AutoModelForCausalLM",
        hardware=(*_TORCH_HARDWARE, "webgpu"),
        tiny_config=_frozen(
            {
                "vocab_size": 99,
                "n_embd": 32,
                "n_layer": 2,
                "n_head": 4,
                "n_positions": 64,
                # GPT-2's default special ids (50256) lie outside a tiny vocabulary.
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 2,
            }
        ),
    ),
    Family(
        name="encoder-decoder",
        alias="t5",
        description="Sequence-to-sequence text models (T5, FLAN-T5, BART, ...).",
        template="encoder_decoder.py.j2",
        example_model="t5-small",
        model_type="t5",
        config_class="T5Config",
        model_class="T5ForConditionalGeneration",
        auto_class="AutoModelForSeq2SeqLM",
        hardware=_TORCH_HARDWARE,
        tiny_config=_frozen(
            {
                "vocab_size": 99,
                "d_model": 32,
                "d_ff": 37,
                "d_kv": 8,
                "num_layers": 2,
                "num_heads": 4,
                "pad_token_id": 0,
                "eos_token_id": 1,
                "decoder_start_token_id": 0,
            }
        ),
    ),
    Family(
        name="vision",
        alias="vit",
        description="Image encoders (ViT, DeiT, BEiT, ...): hidden states per patch.",
        template="vision.py.j2",
        example_model="google/vit-base-patch16-224",
        model_type="vit",
        config_class="ViTConfig",
        model_class="ViTModel",
        auto_class="AutoModel",
        hardware=(*_TORCH_HARDWARE, "qnn", "webnn", "webgpu"),
        tiny_config=_frozen({**_VISION_TINY, **_HEADS}),
    ),
    Family(
        name="vision-text",
        alias="clip",
        description="Joint image-text models (CLIP, SigLIP): image-text similarity logits.",
        template="vision_text.py.j2",
        example_model="openai/clip-vit-base-patch32",
        model_type="clip",
        config_class="CLIPConfig",
        model_class="CLIPModel",
        auto_class="AutoModel",
        hardware=(*_TORCH_HARDWARE, "webnn", "webgpu"),
        tiny_config=_frozen(
            {
                "text_config": {
                    **_TEXT_TINY,
                    **_HEADS,
                    "max_position_embeddings": 32,
                    # CLIP's default special ids lie outside a tiny vocabulary.
                    "pad_token_id": 0,
                    "bos_token_id": 1,
                    "eos_token_id": 2,
                },
                "vision_config": {**_VISION_TINY, **_HEADS},
                "projection_dim": 16,
            }
        ),
    ),
    Family(
        name="speech",
        alias="whisper",
        description="Speech recognition models (Whisper): log-mel features in, token logits out.",
        template="speech.py.j2",
        example_model="openai/whisper-tiny",
        model_type="whisper",
        config_class="WhisperConfig",
        model_class="WhisperForConditionalGeneration",
        auto_class="AutoModelForSpeechSeq2Seq",
        hardware=(*_TORCH_HARDWARE, "webgpu"),
        tiny_config=_frozen(
            {
                "vocab_size": 99,
                "d_model": 32,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "encoder_attention_heads": 4,
                "decoder_attention_heads": 4,
                "encoder_ffn_dim": 37,
                "decoder_ffn_dim": 37,
                "num_mel_bins": 80,
                "max_source_positions": 64,
                "max_target_positions": 32,
                # Whisper refuses to build when its special ids lie outside the vocabulary.
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "decoder_start_token_id": 1,
                "suppress_tokens": [],
                "begin_suppress_tokens": [],
            }
        ),
    ),
)

_BY_NAME: dict[str, Family] = {f.name: f for f in _FAMILIES}
_BY_TEMPLATE_TYPE: dict[str, Family] = {
    **{f.name: f for f in _FAMILIES},
    **{f.name.replace("-", "_"): f for f in _FAMILIES},
    **{f.alias: f for f in _FAMILIES},
}

# Well-known hub names (lower case), checked before the heuristics; a name is looked up whole
# and by its last path component, so `org/model` and `model` both hit.
_KNOWN_MODELS: dict[str, str] = {
    name: family
    for family, names in {
        "encoder-only": (
            "bert-base-uncased",
            "bert-base-cased",
            "bert-large-uncased",
            "bert-large-cased",
            "bert-base-multilingual-cased",
            "prajjwal1/bert-tiny",
            "distilbert-base-uncased",
            "distilbert-base-cased",
            "roberta-base",
            "roberta-large",
            "distilroberta-base",
            "xlm-roberta-base",
            "albert-base-v2",
            "microsoft/deberta-v3-base",
            "google/electra-small-discriminator",
            "sentence-transformers/all-minilm-l6-v2",
            "sentence-transformers/all-mpnet-base-v2",
        ),
        "decoder-only": (
            "gpt2",
            "gpt2-medium",
            "gpt2-large",
            "gpt2-xl",
            "distilgpt2",
            "sshleifer/tiny-gpt2",
            "eleutherai/gpt-neo-125m",
            "eleutherai/pythia-70m",
            "facebook/opt-125m",
            "microsoft/dialogpt-small",
            "bigscience/bloom-560m",
            "tinyllama/tinyllama-1.1b-chat-v1.0",
            "huggingfacetb/smollm-135m",
        ),
        "encoder-decoder": (
            "t5-small",
            "t5-base",
            "t5-large",
            "google/flan-t5-small",
            "google/flan-t5-base",
            "google/flan-t5-large",
            "google/mt5-small",
            "google/byt5-small",
            "facebook/bart-base",
            "facebook/bart-large-cnn",
            "sshleifer/distilbart-cnn-12-6",
            "google/pegasus-xsum",
            "helsinki-nlp/opus-mt-en-de",
        ),
        "vision": (
            "google/vit-base-patch16-224",
            "google/vit-base-patch16-224-in21k",
            "google/vit-large-patch16-224",
            "facebook/deit-tiny-patch16-224",
            "facebook/deit-small-patch16-224",
            "microsoft/beit-base-patch16-224",
            "microsoft/swin-tiny-patch4-window7-224",
            "facebook/dinov2-small",
        ),
        "vision-text": (
            "openai/clip-vit-base-patch32",
            "openai/clip-vit-base-patch16",
            "openai/clip-vit-large-patch14",
            "laion/clip-vit-b-32-laion2b-s34b-b79k",
            "google/siglip-base-patch16-224",
        ),
        "speech": (
            "openai/whisper-tiny",
            "openai/whisper-tiny.en",
            "openai/whisper-base",
            "openai/whisper-small",
            "openai/whisper-medium",
            "openai/whisper-large-v3",
            "distil-whisper/distil-small.en",
        ),
    }.items()
    for name in names
}
_KNOWN_BY_SHORT_NAME: dict[str, str] = {
    name.rsplit("/", 1)[-1]: family for name, family in _KNOWN_MODELS.items()
}

# Name heuristics, first match wins. The order matters: multi-modal and speech names often
# contain a text or vision backbone's name ("clip-vit", "whisper"), so they come first, and
# encoder-decoder names go before encoder-only ones ("distilbart", "e5" vs "t5").
_HEURISTICS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("vision-text", r"clip|siglip"),
        ("speech", r"whisper"),
        (
            "encoder-decoder",
            r"(?<![a-z0-9])(?:flan-|long-?|u?m|by)?t5(?![0-9])|bart|pegasus|opus-mt|marian|m2m|nllb",
        ),
        ("vision", r"(?<![a-z])(?:vit|deit|beit|swin|dinov2|convnext)"),
        (
            "decoder-only",
            r"gpt|(?<![a-z])(?:opt|llama|mistral|qwen|phi|pythia|bloom|falcon|gemma|smollm)",
        ),
        (
            "encoder-only",
            r"bert|electra|minilm|mpnet|ernie|(?<![a-z0-9])(?:bge|e5)(?![0-9])",
        ),
    )
)


def list_families() -> list[Family]:
    """Return every architecture family, in a stable order."""
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    """Return the family called `name` (a family name or its alias), or raise 422."""
    key = name.strip().lower()
    family = _BY_TEMPLATE_TYPE.get(key)
    if family is None:
        raise Unprocessable(
            f"unknown template_type {name!r}; use one of: {_family_choices()}",
            code="unknown_template_type",
            extra={"families": [f.name for f in _FAMILIES]},
        )
    return family


def resolve_family(model_name: str, template_type: str | None = None) -> Family:
    """Return the family for a model: template_type wins, then known names, then heuristics."""
    if template_type is not None and template_type.strip():
        return get_family(template_type)
    name = model_name.strip().rstrip("/").lower()
    short = name.rsplit("/", 1)[-1]
    known = _KNOWN_MODELS.get(name) or _KNOWN_BY_SHORT_NAME.get(short)
    if known is not None:
        return _BY_NAME[known]
    for family, pattern in _HEURISTICS:
        if pattern.search(short):
            return _BY_NAME[family]
    raise Unprocessable(
        f"cannot tell the architecture of {model_name!r}; "
        f"pass template_type as one of: {_family_choices()}",
        code="unknown_architecture",
        extra={"families": [f.name for f in _FAMILIES]},
    )


def _family_choices() -> str:
    return ", ".join(f"{f.name} ({f.alias})" for f in _FAMILIES)
