"""Architecture families: the model-name table, heuristics, template_type override and 422s."""

from __future__ import annotations

import json

import pytest

from app.components.generator.families import (
    ALL_HARDWARE,
    Family,
    get_family,
    list_families,
    resolve_family,
)
from app.components.generator.render import TEMPLATES_DIR
from app.core.errors import Unprocessable

FAMILY_NAMES = [
    "encoder-only",
    "decoder-only",
    "encoder-decoder",
    "vision",
    "vision-text",
    "speech",
]


@pytest.mark.parametrize(
    ("model_name", "family"),
    [
        # the six example models
        ("bert-base-uncased", "encoder-only"),
        ("gpt2", "decoder-only"),
        ("t5-small", "encoder-decoder"),
        ("google/vit-base-patch16-224", "vision"),
        ("openai/clip-vit-base-patch32", "vision-text"),
        ("openai/whisper-tiny", "speech"),
        # relatives from the table
        ("distilbert-base-uncased", "encoder-only"),
        ("roberta-base", "encoder-only"),
        ("google-bert/bert-base-uncased", "encoder-only"),
        ("sentence-transformers/all-MiniLM-L6-v2", "encoder-only"),
        ("gpt2-medium", "decoder-only"),
        ("distilgpt2", "decoder-only"),
        ("openai-community/gpt2", "decoder-only"),
        ("facebook/opt-125m", "decoder-only"),
        ("t5-base", "encoder-decoder"),
        ("google/flan-t5-small", "encoder-decoder"),
        ("google-t5/t5-small", "encoder-decoder"),
        ("facebook/bart-base", "encoder-decoder"),
        ("google/vit-base-patch16-224-in21k", "vision"),
        ("facebook/deit-tiny-patch16-224", "vision"),
        ("openai/clip-vit-large-patch14", "vision-text"),
        ("openai/whisper-large-v3", "speech"),
        ("distil-whisper/distil-small.en", "speech"),
    ],
)
def test_known_models_resolve_to_their_family(model_name: str, family: str) -> None:
    assert resolve_family(model_name).name == family


@pytest.mark.parametrize(
    ("model_name", "family"),
    [
        ("my-org/bert-finetuned-ner", "encoder-only"),
        ("my-org/deberta-v3-custom", "encoder-only"),
        ("intfloat/e5-small-v2", "encoder-only"),
        ("my-org/gpt-neox-tiny", "decoder-only"),
        ("meta-llama/Llama-3.2-1B", "decoder-only"),
        ("Qwen/Qwen2.5-0.5B", "decoder-only"),
        ("google/mt5-small-finetuned", "encoder-decoder"),
        ("google/byt5-base-custom", "encoder-decoder"),
        ("my-org/distilbart-xsum", "encoder-decoder"),
        ("my-org/vit-finetuned-cifar", "vision"),
        ("my-org/swin-custom", "vision"),
        ("laion/CLIP-ViT-H-14-custom", "vision-text"),
        ("my-org/siglip-so400m", "vision-text"),
        ("my-org/whisper-finetuned-de", "speech"),
    ],
)
def test_unlisted_models_resolve_by_name_heuristics(model_name: str, family: str) -> None:
    assert resolve_family(model_name).name == family


def test_clip_wins_over_vit_in_a_clip_vit_name() -> None:
    assert resolve_family("acme/clip-vit-tiny-custom").name == "vision-text"


def test_model_names_resolve_case_insensitively_and_with_a_trailing_slash() -> None:
    assert resolve_family("BERT-Base-Uncased").name == "encoder-only"
    assert resolve_family("OpenAI/Whisper-Tiny/").name == "speech"


def test_the_organisation_does_not_decide_the_family() -> None:
    assert resolve_family("bert-lovers/gpt2-finetuned").name == "decoder-only"


@pytest.mark.parametrize(
    ("template_type", "family"),
    [
        ("encoder-only", "encoder-only"),
        ("encoder_only", "encoder-only"),
        ("Encoder-Only", "encoder-only"),
        ("bert", "encoder-only"),
        ("gpt2", "decoder-only"),
        ("t5", "encoder-decoder"),
        ("vit", "vision"),
        ("clip", "vision-text"),
        ("whisper", "speech"),
        ("speech", "speech"),
    ],
)
def test_template_type_accepts_family_names_and_aliases(template_type: str, family: str) -> None:
    assert resolve_family("acme/in-house-model", template_type).name == family


def test_template_type_wins_over_the_model_name() -> None:
    assert resolve_family("gpt2", "t5").name == "encoder-decoder"


def test_blank_template_type_falls_back_to_the_model_name() -> None:
    assert resolve_family("gpt2", "").name == "decoder-only"
    assert resolve_family("gpt2", "  ").name == "decoder-only"


def test_unknown_model_raises_422_listing_every_family() -> None:
    with pytest.raises(Unprocessable) as caught:
        resolve_family("acme/mystery-model")
    error = caught.value
    assert error.status_code == 422
    assert error.code == "unknown_architecture"
    assert "acme/mystery-model" in error.detail
    assert "template_type" in error.detail
    for name in FAMILY_NAMES:
        assert name in error.detail
    assert error.extra["families"] == FAMILY_NAMES


def test_unknown_template_type_raises_422_listing_every_family() -> None:
    with pytest.raises(Unprocessable) as caught:
        resolve_family("bert-base-uncased", "rnn")
    assert caught.value.status_code == 422
    assert caught.value.code == "unknown_template_type"
    assert all(name in caught.value.detail for name in FAMILY_NAMES)


def test_get_family_returns_the_family_by_alias() -> None:
    assert get_family("clip") is get_family("vision-text")


def test_list_families_returns_the_six_families_in_order() -> None:
    assert [family.name for family in list_families()] == FAMILY_NAMES


@pytest.mark.parametrize("family", list_families(), ids=lambda family: family.name)
def test_each_family_is_complete_and_consistent(family: Family) -> None:
    assert (TEMPLATES_DIR / family.template).is_file()
    assert resolve_family(family.example_model) is family
    assert resolve_family("acme/unknown", family.alias) is family
    assert "cpu" in family.hardware
    assert set(family.hardware) <= set(ALL_HARDWARE)
    assert family.config_class.endswith("Config")
    assert json.loads(json.dumps(family.as_dict()))["name"] == family.name


@pytest.mark.parametrize("family", list_families(), ids=lambda family: family.name)
def test_tiny_configs_keep_special_token_ids_inside_their_vocabulary(family: Family) -> None:
    configs = [family.tiny_config, *(v for v in family.tiny_config.values() if isinstance(v, dict))]
    for config in configs:
        vocab = config.get("vocab_size")
        for key, value in config.items():
            if key.endswith("token_id") and vocab is not None:
                assert 0 <= value < vocab, f"{family.name}: {key}={value} outside vocab {vocab}"
