"""Backbone.fuse: a window is read in `segment_groups` runs of consecutive segments, and a
window of any length (a still frame, a short last window) splits into runs of that length."""

import pytest
import torch

from model.config import ModelConfig
from model.data.batch import random_batch
from model.nn.backbone import Backbone


def _backbone(groups: int) -> Backbone:
    torch.manual_seed(0)
    cfg = ModelConfig.from_name("tiny", max_segments=4, segment_groups=groups)
    return Backbone(cfg, audio=False, spans=False).eval()


def _parts(backbone: Backbone, segments: int):
    batch = random_batch(backbone.config, 2, segments, generator=torch.Generator().manual_seed(1))
    frames = backbone.encode_frames(batch.frames)
    seg = batch.segment_mask
    return [backbone.frame_part(frames, seg), backbone.text_part(batch.text, batch.text_mask, seg)]


def _alone(backbone: Backbone, parts, start: int, stop: int) -> list[torch.Tensor]:
    """The joint outputs of segments start..stop run as one sequence of their own."""
    x = torch.cat([p[0][:, start:stop] for p in parts], dim=2)  # (B, s, T, D)
    valid = torch.cat([p[1][:, start:stop] for p in parts], dim=2)
    B, s, T, D = x.shape
    y = backbone.joint(x.reshape(B, s * T, D), valid.reshape(B, s * T)).view(B, s, T, D)
    return list(y.split([p[0].shape[2] for p in parts], dim=2))


@pytest.mark.parametrize(
    ("groups", "segments", "runs"),
    [
        (2, 4, [(0, 2), (2, 4)]),  # a full window: exactly segment_groups runs
        (2, 3, [(0, 2), (2, 3)]),  # shorter: runs of ceil(3 / 2), the last one short
        (4, 4, [(0, 1), (1, 2), (2, 3), (3, 4)]),  # every segment its own sequence
        (4, 1, [(0, 1)]),  # a still frame
        (1, 3, [(0, 3)]),
    ],
)
def test_each_run_is_read_as_a_sequence_of_its_own(groups, segments, runs):
    backbone = _backbone(groups)
    parts = _parts(backbone, segments)
    with torch.no_grad():
        fused = backbone.fuse(parts)
        for start, stop in runs:
            for got, want in zip(fused, _alone(backbone, parts, start, stop), strict=True):
                torch.testing.assert_close(got[:, start:stop], want, atol=1e-5, rtol=1e-5)
    assert [f.shape[:3] for f in fused] == [p[0].shape[:3] for p in parts]


def test_attention_received_splits_the_same_runs():
    backbone = _backbone(2)
    parts = _parts(backbone, 3)
    S, T = 3, sum(p[0].shape[2] for p in parts)
    queries = torch.zeros(2, S, T, dtype=torch.bool)
    queries[:, 2, 0] = True  # a query only in the last, short run
    with torch.no_grad():
        received = backbone.attention_received(parts, queries)
    assert received.shape == (2, S, T)
    assert (received[:, :2] == 0).all(), "the first run holds no query"
    torch.testing.assert_close(received[:, 2].sum(-1), torch.ones(2))  # one query's row
