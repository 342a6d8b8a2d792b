import json

import numpy as np
import pytest

from devtools.samples import make_sample
from shards import schema
from shards.decode import decode_sample


def test_encode_decode_round_trip_keeps_every_field():
    s = make_sample("abc_DEF-1", window=3, segments=5)
    members = schema.encode(s)
    assert set(members) == {"json", "mel.npy", *(f"{i:02d}.jpg" for i in range(5))}
    back = decode_sample(s.key, members)
    assert back.meta == s.meta
    assert back.frames == s.frames
    np.testing.assert_array_equal(back.mel, s.mel)


def test_sample_without_audio_has_no_mel_member():
    s = make_sample(audio=False)
    members = schema.encode(s)
    assert "mel.npy" not in members
    assert decode_sample(s.key, members).mel is None


def test_key_rejects_unsafe_video_ids():
    for bad in ["../x", "a b", "a.b", "a;rm", ""]:
        with pytest.raises(schema.SampleError):
            schema.sample_key(bad, 0)
    assert schema.sample_key("dQw4w9WgXcQ", 12) == "dQw4w9WgXcQ_w0012"


def test_quantize_round_trip_within_half_a_step():
    rng = np.random.default_rng(0)
    mel = rng.random((3, 64, 188)).astype(np.float32) * np.array([0.5, 4, 9])[:, None, None]
    q, scale = schema.quantize_mel(mel)
    assert q.dtype == np.uint8 and scale.shape == (3,)
    back = schema.dequantize_mel(q, scale)
    # values above the 99th percentile clip; the rest are within half a step
    p99 = np.quantile(mel.reshape(3, -1), 0.99, axis=1)
    ok = mel <= np.maximum(p99, 1.0)[:, None, None]
    err = np.abs(back - mel)[ok]
    assert err.max() <= (0.5 / scale.min()) + 1e-6


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda m: m.pop("json"), "no .json"),
        (lambda m: m.pop("02.jpg"), "frame member .02.jpg missing"),
        (lambda m: m.update(json=b"{not json"), "does not parse"),
        (lambda m: m.update({"mel.npy": b"garbage"}), "does not load"),
    ],
)
def test_decode_names_the_damage(damage, match):
    s = make_sample(segments=4)
    members = schema.encode(s)
    damage(members)
    with pytest.raises(schema.SampleError, match=match):
        decode_sample(s.key, members)


def test_decode_rejects_wrong_mel_shape_and_other_schema_versions():
    s = make_sample(segments=4)
    members = schema.encode(s)
    meta = json.loads(members["json"])
    meta["mel_shape"] = [4, 64, 100]
    members["json"] = json.dumps(meta).encode()
    with pytest.raises(schema.SampleError, match="mel_shape"):
        decode_sample(s.key, members)
    meta["schema"] = 99
    members["json"] = json.dumps(meta).encode()
    with pytest.raises(schema.SampleError, match="schema version 99"):
        decode_sample(s.key, members)


def test_check_catches_words_outside_window_and_bad_subsegment():
    s = make_sample(segments=2)
    s.meta.words[0].start_ms = s.meta.end_ms + 10_000
    s.meta.words[0].end_ms = s.meta.end_ms + 10_500
    with pytest.raises(schema.SampleError, match="outside window"):
        schema.check(s)
    s = make_sample(segments=2)
    s.meta.words[0].subsegment = 3
    with pytest.raises(schema.SampleError, match="sub-segment 3"):
        schema.check(s)
