"""The backbone's optional hooks, off by default: attention probabilities (model/nn/layers.py,
Backbone.attention_received) and unknown frame positions (JointInput.frames)."""

import torch

from model.config import ModelConfig
from model.data.batch import random_batch
from model.nn.backbone import Backbone
from model.nn.layers import Attention, Transformer

TINY = ModelConfig.from_name("tiny")


def test_attention_weights_are_the_ones_its_forward_applies():
    torch.manual_seed(0)
    attn = Attention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    keys = torch.rand(2, 7) < 0.7
    keys[:, 0] = True
    w = attn.weights(x, keys)  # (B, h, T, T)
    assert w.shape == (2, 4, 7, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))
    assert (w[~keys[:, None, None, :].expand_as(w)] == 0).all(), "masked keys get nothing"
    v = attn.qkv(x).view(2, 7, 3, 4, 4)[:, :, 2].transpose(1, 2)  # (B, h, T, d)
    by_hand = attn.proj((w @ v).transpose(1, 2).reshape(2, 7, 16))
    torch.testing.assert_close(by_hand, attn(x, keys), atol=1e-5, rtol=1e-5)


def test_last_attention_is_the_last_blocks_weights_on_its_input():
    torch.manual_seed(1)
    net = Transformer(16, 3, 4).eval()
    x = torch.randn(2, 5, 16)
    keys = torch.ones(2, 5, dtype=torch.bool)
    keys[1, 3:] = False
    h = x
    for block in net.blocks[:-1]:
        h = block(h, keys)
    expected = net.blocks[-1].attn.weights(net.blocks[-1].ln1(h), keys)
    torch.testing.assert_close(net.last_attention(x, keys), expected)


def test_attention_received_averages_over_queries_and_sums_to_one_per_sequence():
    torch.manual_seed(2)
    bb = Backbone(TINY, audio=False, spans=False).eval()
    batch = random_batch(TINY, 2, 3, text_len=4, generator=torch.Generator().manual_seed(0))
    batch.text_mask[0, 1] = False  # a segment without words
    batch.text[0, 1] = TINY.pad_id
    frames = bb.encode_frames(batch.frames)
    parts = [
        bb.frame_part(frames, batch.segment_mask),
        bb.text_part(batch.text, batch.text_mask, batch.segment_mask),
    ]
    valid = torch.cat([p[1] for p in parts], dim=2)  # (B, S, T)
    queries = torch.cat([parts[0][1], torch.zeros_like(parts[1][1])], dim=2)  # frame tokens
    with torch.no_grad():
        got = bb.attention_received(parts, queries)  # (B, S, T)
    assert got.shape == valid.shape
    assert (got[~valid] == 0).all(), "padding is never attended to"
    torch.testing.assert_close(got.flatten(1).sum(1), torch.ones(2))  # one sequence per window
    # by hand: the frame tokens' attention rows, averaged over heads and queries
    x = torch.cat([p[0] for p in parts], dim=2).flatten(1, 2)
    w = bb.joint.last_attention(x, valid.flatten(1)).mean(1)  # (B, n, n)
    q = queries.flatten(1)
    by_hand = torch.stack([w[b][q[b]].mean(0) for b in range(2)])
    torch.testing.assert_close(got.flatten(1), by_hand)


def test_unknown_frames_swap_their_segment_embedding_and_nothing_else():
    torch.manual_seed(3)
    bb = Backbone(TINY, audio=False, spans=False)
    tokens = torch.randn(2, 4, TINY.frame_tokens, TINY.width)
    unknown = torch.tensor([[False, True, False, True], [False, False, False, False]])
    position = torch.randn(TINY.width)
    plain = bb.joint_input.frames(tokens)
    hidden = bb.joint_input.frames(tokens, unknown, position)
    torch.testing.assert_close(hidden[~unknown], plain[~unknown])
    segment = bb.joint_input.segment[:4, None]  # (S, 1, D)
    moved = plain - segment + position  # the same token with the unknown position instead
    torch.testing.assert_close(hidden[unknown], moved[unknown])
    assert not torch.allclose(hidden[0, 1], plain[0, 1]), "the hidden frame did change"
