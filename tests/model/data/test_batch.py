"""The batch contract: random batches satisfy it, violations are caught, moves copy."""

import pytest
import torch

from model.config import MASK_ID, PAD_ID, ModelConfig
from model.data.batch import Batch, random_batch

TINY = ModelConfig.from_name("tiny")


def _batch():
    return random_batch(TINY, 2, 4, text_len=5, generator=torch.Generator().manual_seed(0))


def test_random_batch_satisfies_the_contract_and_documented_shapes():
    b = _batch()
    b.check(TINY)
    assert b.frames.shape == (2, 4, 3, 64, 96) and b.frames.dtype == torch.uint8
    assert b.audio.shape == (2, 4, 3, 60, 64)
    assert b.text.shape == b.text_mask.shape == (2, 4, 3, 5)
    assert b.text_present.shape == b.audio_valid.shape == (2, 4, 3)
    assert (PAD_ID, MASK_ID) == (0, 1)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda b: setattr(b, "audio", b.audio.transpose(-1, -2)), "audio"),
        (
            lambda b: (
                b.text.__setitem__((0, 0, 0, 0), MASK_ID)
                or b.text_mask.__setitem__((0, 0, 0, 0), True)
            ),
            "MASK",
        ),
        (lambda b: b.text_mask.__setitem__((0, 0, 0), False), "PAD"),
        (lambda b: b.segment_mask.__setitem__(0, False), "real segment"),
        (lambda b: setattr(b, "text", b.text.int()), "int64"),
    ],
)
def test_check_rejects_contract_violations(breaker, message):
    b = _batch()
    b.text[0, 0, 0, 0] = 5
    b.text_mask[0, 0, 0, 0] = True
    breaker(b)
    with pytest.raises(AssertionError, match=message):
        b.check(TINY)


def test_to_returns_a_copy_and_keeps_masks_field():
    b = _batch()
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and moved is not b and moved.masks is None
    assert torch.equal(moved.text, b.text)
