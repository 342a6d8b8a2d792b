"""The model's configuration refuses values that cannot work with a ValueError naming the
key as the CLI spells it, also under `python -O` (which strips asserts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from model.config import (
    CombinatorialLossConfig,
    MerlotLossConfig,
    MilNceLossConfig,
    ModelConfig,
    MvmLossConfig,
    ObjectiveConfig,
    SpanLossConfig,
)
from model.objectives.losses import CombinatorialLoss, MaskedPatchLoss

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: ModelConfig(width=100, heads=12), "model.config.width"),
        (lambda: ModelConfig(heads=0), "model.config.heads"),
        (lambda: ModelConfig(frame_size=(64, 90)), "model.config.frame_size"),
        (lambda: ModelConfig(audio_frames=61), "model.config.audio_frames"),
        (lambda: ModelConfig(segment_groups=3), "model.config.segment_groups"),
        (lambda: ModelConfig(mask_id=0), "model.config.mask_id"),
        (lambda: ModelConfig(vocab_size=1), "model.config.mask_id"),
        (lambda: ModelConfig.from_name("huge"), "model.size"),
        (lambda: ModelConfig.from_name("tiny", frame_sise=(64, 96)), "model.config.frame_sise"),
        (lambda: SpanLossConfig(mask_rate=1.5), "model.objectives.span.mask_rate"),
        (lambda: SpanLossConfig(frame_mask_rate=-0.1), "model.objectives.span.frame_mask_rate"),
        (lambda: SpanLossConfig(mask_rate=0.6), "model.objectives.span.mask_rate"),
        (lambda: SpanLossConfig(mask_budget="half"), "model.objectives.span.mask_budget"),
        (lambda: SpanLossConfig(frame_term="cls"), "model.objectives.span.frame_term"),
        (lambda: SpanLossConfig(audio_negatives="some"), "model.objectives.span.audio_negatives"),
        (lambda: SpanLossConfig(neighbour_text_p=2.0), "model.objectives.span.neighbour_text_p"),
        (lambda: SpanLossConfig(pass_words_p=-1.0), "model.objectives.span.pass_words_p"),
        (
            lambda: CombinatorialLossConfig(pair_weights={"t-x": 1.0}),
            "model.objectives.combinatorial.pair_weights",
        ),
        (
            lambda: CombinatorialLossConfig(temperature=0.0),
            "model.objectives.combinatorial.temperature",
        ),
        (lambda: MilNceLossConfig(num_candidates=0), "model.objectives.milnce.num_candidates"),
        (lambda: MvmLossConfig(targets=("depth",)), "model.objectives.mvm.targets"),
        (lambda: MvmLossConfig(distance="l3"), "model.objectives.mvm.distance"),
        (lambda: MvmLossConfig(mask_ratio=1.0), "model.objectives.mvm.mask_ratio"),
        (lambda: MerlotLossConfig(temperature=0.0), "model.objectives.merlot.temperature"),
        (lambda: MerlotLossConfig(mask_rate=0.0), "model.objectives.merlot.mask_rate"),
        (
            lambda: MerlotLossConfig(attention_share=1.5),
            "model.objectives.merlot.attention_share",
        ),
        (lambda: MerlotLossConfig(reorder_rate=-0.1), "model.objectives.merlot.reorder_rate"),
        (lambda: MerlotLossConfig(mlm_weight=-1.0), "model.objectives.merlot.mlm_weight"),
        (
            lambda: ObjectiveConfig(span=SpanLossConfig(weight=0.0)),
            "model.objectives",
        ),
        (lambda: ObjectiveConfig.only("contrastive"), "objective"),
        (
            lambda: CombinatorialLoss({"t-v": 0.0}),
            "model.objectives.combinatorial.pair_weights",
        ),
        (lambda: MaskedPatchLoss("cosine"), "model.objectives.mvm.distance"),
    ],
)
def test_a_bad_value_raises_value_error_naming_its_key(build, key):
    with pytest.raises(ValueError, match=f"^{re.escape(key)}: ") as info:
        build()
    assert "\n" not in str(info.value), "one line"


def test_good_values_and_the_presets_pass():
    for size in ("tiny", "base", "large"):
        assert ModelConfig.from_name(size, max_segments=4).max_segments == 4
    assert SpanLossConfig(mask_rate=0.0, frame_mask_rate=1.0).mask_rate == 0.0
    assert SpanLossConfig(mask_budget="shared", mask_rate=0.8).mask_rate == 0.8


def test_span_defaults_are_reserves_recipe_and_legacy_is_the_old_one():
    reserve, legacy = SpanLossConfig(), SpanLossConfig.legacy()
    assert (reserve.mask_rate, reserve.mask_budget, reserve.frame_term) == (
        0.25,
        "per_view",
        "vision_free",
    )
    assert (reserve.audio_negatives, reserve.neighbour_text_p, reserve.pass_words_p) == (
        "all",
        0.8,
        0.5,
    )
    assert reserve.mask_audio_token and reserve.borrow_tokens
    assert (legacy.mask_budget, legacy.frame_term, legacy.audio_negatives) == (
        "shared",
        "masked_frames",
        "masked",
    )
    assert legacy.neighbour_text_p == 0.0 and not legacy.mask_audio_token
    assert not legacy.borrow_tokens and legacy.mask_rate == legacy.frame_mask_rate == 0.25
    assert ObjectiveConfig.only("mvm").enabled() == ["mvm"]
    assert ObjectiveConfig.only("merlot").enabled() == ["merlot"]
    assert MerlotLossConfig(attention_share=0.0, reorder_rate=1.0).reorder_rate == 1.0


def test_the_checks_survive_python_dash_o():
    code = "from model.config import ModelConfig; ModelConfig(frame_size=(64, 90))"
    run = subprocess.run(
        [sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "ValueError: model.config.frame_size: [64, 90] must be a multiple" in run.stderr
