"""shards.decode: every json field is type- and range-checked, and no size a member declares
is allocated before it is checked (a .npy header against its bytes, a JPEG header against a
cap, a tar header against the member cap)."""

from __future__ import annotations

import io
import json
import tarfile
import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from devtools.samples import jpeg, make_sample
from shards import reader, schema
from shards.decode import (
    MAX_FRAME_PIXELS,
    FieldError,
    MemberError,
    decode_sample,
    open_frame,
    parse_meta,
    read_npy,
)
from tests.helpers import huge_jpeg, npy_declaring

# --- crafted members ---


def members_with(change, segments: int = 3) -> tuple[str, dict[str, bytes]]:
    """A whole sample's members, its json changed by ``change(meta_dict)``."""
    sample = make_sample("vid", window=0, segments=segments)
    members = schema.encode(sample)
    meta = json.loads(members["json"])
    change(meta)
    members["json"] = json.dumps(meta).encode()  # NaN and Infinity as JSON's extensions
    return sample.key, members


def _set(path: str, value):
    """change(meta) that sets ``meta[a][b]...`` (path "words.0.text") to ``value``."""
    *parents, last = path.split(".")

    def change(meta: dict) -> None:
        node = meta
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value

    return change


# --- the json, field by field ---

FIELD_CASES = {
    # the cases
    "word text a number": ("words.0.text", 7, "words[0].text", "must be a string, got 7"),
    "segment index a string": ("words.0.segment", "3", "words[0].segment", "got '3'"),
    "segment index 2.5": ("words.0.segment", 2.5, "words[0].segment", "an integer, got 2.5"),
    "mel scale not a number": ("mel_scale.1", "x", "mel_scale[1]", "finite number > 0"),
    "mel scale zero": ("mel_scale.1", 0, "mel_scale[1]", "finite number > 0, got 0"),
    "mel scale NaN": ("mel_scale.1", float("nan"), "mel_scale[1]", "got nan"),
    # the same checks elsewhere
    "mel scale infinite": ("mel_scale.0", float("inf"), "mel_scale[0]", "got inf"),
    "mel scale negative": ("mel_scale.2", -1.5, "mel_scale[2]", "got -1.5"),
    "segment index true": ("words.1.segment", True, "words[1].segment", "got True"),
    "negative word time": ("words.0.start_ms", -5, "words[0].start_ms", ">= 0, got -5"),
    "word ends before it starts": ("words.0.end_ms", 1, "words[0].end_ms", "got 1"),
    "time past 2**53": ("end_ms", 10**20, "end_ms", "an integer >= 0"),
    "segment of one number": ("segments.1", [5000], "segments[1]", "a list of 2"),
    "segment ends where it starts": ("segments.0", [0, 0], "segments[0][1]", ">= 1, got 0"),
    "has_audio 1": ("has_audio", 1, "has_audio", "true or false, got 1"),
    "title null": ("title", None, "title", "a string, got None"),
    "non-speech tag a number": ("non_speech", [3], "non_speech[0]", "a string, got 3"),
    "sub-segments 10**9": ("params.subsegments", 10**9, "params.subsegments", "in 1..64"),
    "n_mels a string": ("params.n_mels", "64", "params.n_mels", "an integer"),
    "fmax below fmin": ("params.fmax", 10.0, "params.fmax", "> 20, got 10.0"),
    "log_offset zero": ("params.log_offset", 0, "params.log_offset", "> 0, got 0"),
    "mel shape of strings": ("mel_shape", ["3", 64, 188], "mel_shape[0]", "an integer"),
    "mel scales not a list": ("mel_scale", {"a": 1}, "mel_scale", "a list, got {'a': 1}"),
    "word not an object": ("words.2", ["w", 0, 1, 0, 0], "words[2]", "must be an object"),
    "schema true": ("schema", True, "schema", "an integer, got True"),
}


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_each_bad_json_field_is_refused_naming_its_path(case):
    path, value, field, what = FIELD_CASES[case]
    key, members = members_with(_set(path, value))
    with pytest.raises(FieldError) as exc:
        decode_sample(key, members)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{key}.json: {field} ")
    assert what in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_and_unknown_fields_are_named():
    key, members = members_with(lambda m: m["words"][1].pop("text"))
    with pytest.raises(FieldError, match=r"words\[1\]\.text is missing"):
        decode_sample(key, members)
    key, members = members_with(lambda m: m["params"].update(colour="red"))
    with pytest.raises(FieldError, match=r"params\.colour is not a field of the format"):
        decode_sample(key, members)


def test_a_long_bad_value_is_shown_short():
    key, members = members_with(_set("words.0.segment", "9" * 100_000))
    with pytest.raises(FieldError) as exc:
        decode_sample(key, members)
    assert len(str(exc.value)) < 200


@pytest.mark.parametrize(
    "text",
    [b"[" * 200_000 + b"]" * 200_000, b'{"schema": 1, "window": ' + b"9" * 5000 + b"}"],
    ids=["nested too deep", "5000-digit number"],
)
def test_json_that_python_refuses_to_parse_is_a_sample_error(text):
    with pytest.raises(schema.SampleError, match=r"v_w0000\.json: json does not parse"):
        parse_meta(text, where="v_w0000.json")


def test_field_errors_pickle_across_processes():
    import pickle

    err = FieldError("k.json", "words[0].text", "must be a string, got 7")
    back = pickle.loads(pickle.dumps(err))
    assert (back.field, str(back)) == (err.field, str(err))


def test_a_whole_sample_decodes_to_what_was_encoded():
    sample = make_sample("vid", window=2, segments=3)
    back = decode_sample(sample.key, schema.encode(sample))
    assert back.meta == sample.meta and back.frames == sample.frames
    np.testing.assert_array_equal(back.mel, sample.mel)
    assert back.mel.flags.writeable


# --- the mel's .npy ---


def test_npy_header_declaring_a_terabyte_is_refused_without_allocating_it():
    key, members = members_with(lambda m: None)
    members["mel.npy"] = npy_declaring((10**6, 10**6))
    tracemalloc.start()
    try:
        with pytest.raises(schema.SampleError) as exc:
            decode_sample(key, members)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "mel.npy does not load" in str(exc.value)
    assert "declares uint8(1000000, 1000000), 1000000000000 bytes; the member holds 64" in str(
        exc.value
    )
    assert peak < 20 << 20, f"{peak} bytes traced"


@pytest.mark.parametrize(
    "data, why",
    [
        (npy_declaring((-1, -1), payload=b"\0"), "shape (-1, -1)"),
        (npy_declaring((4,), descr="|O", payload=bytes(32)), "dtype object"),
        (npy_declaring((10**9,), descr="|V0", payload=b""), "dtype |V0"),
        (npy_declaring((2, 3), payload=bytes(5)), "6 bytes; the member holds 5"),
        (npy_declaring((2, 3), payload=bytes(7)), "6 bytes; the member holds 7"),
        (b"\x93NUMPY\x03\x00" + bytes(60), "version 3.0"),
        (b"garbage", "is not .npy"),
    ],
    ids=["negative", "objects", "zero-size items", "short", "long", "version 3", "not npy"],
)
def test_npy_members_that_are_not_what_they_declare_are_refused(data, why):
    with pytest.raises(MemberError, match=why.replace("(", r"\(").replace(")", r"\)")):
        read_npy(data)


@pytest.mark.parametrize("order", ["C", "F"])
def test_read_npy_reads_what_np_save_writes(order):
    arr = np.asarray(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), order=order)
    for version in [(1, 0), (2, 0)]:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
        back = read_npy(buf.getvalue())
        np.testing.assert_array_equal(back, arr)
        assert back.dtype == np.uint8 and back.flags.writeable


# --- frames ---


def test_jpeg_declaring_30000_by_30000_is_refused_before_decoding():
    key, members = members_with(lambda m: None)
    members["01.jpg"] = huge_jpeg(members["01.jpg"])
    with JpegImagePlugin.JpegImageFile(io.BytesIO(members["01.jpg"])) as img:  # header only
        assert img.size == (30000, 30000)
    with pytest.raises(schema.SampleError) as exc:
        decode_sample(key, members)
    assert str(exc.value) == (
        f"{key}: frame member .01.jpg declares 30000x30000 pixels, "
        f"more than the {MAX_FRAME_PIXELS} a frame may have"
    )


def test_open_frame_refuses_sizes_past_the_cap_and_opens_the_rest_lazily():
    # between PIL's own warning and error limits: refused here, and PIL warns nothing
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(MemberError, match="declares 12000x12000 pixels"):
            open_frame(huge_jpeg(jpeg(0), 12000, 12000))
    assert seen == []
    with open_frame(jpeg(1, (64, 36))) as img:
        assert img.size == (64, 36) and img.format == "JPEG"
    with pytest.raises(MemberError, match="does not decode as a JPEG"):
        open_frame(b"not an image at all")
    assert Image.MAX_IMAGE_PIXELS != MAX_FRAME_PIXELS  # PIL's global is left alone


def test_a_png_frame_is_not_a_jpeg():
    key, members = members_with(lambda m: None)
    buf = io.BytesIO()
    Image.new("RGB", (64, 36)).save(buf, format="PNG")
    members["00.jpg"] = buf.getvalue()
    with pytest.raises(schema.SampleError, match=r"\.00\.jpg does not decode as a JPEG"):
        decode_sample(key, members)


# --- tar members ---


def test_a_tar_member_declaring_a_terabyte_is_shard_damage_not_an_allocation(tmp_path):
    shard = tmp_path / "big-000.tar"
    sample = make_sample("vid", segments=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for suffix, data in schema.encode(sample).items():
            info = tarfile.TarInfo(f"{sample.key}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        members = buf.getvalue()  # before close: no end-of-archive blocks yet
    info = tarfile.TarInfo("vid_w0001.json")
    info.size = 10**12  # a PAX size record: past what a ustar header holds
    shard.write_bytes(members + info.tobuf(tarfile.PAX_FORMAT) + b'{"schema": 1}' + bytes(1024))
    expected = f"member vid_w0001.json declares {10**12} bytes, more than the"
    with pytest.raises(reader.ShardError, match=expected):
        list(reader.iter_raw(str(shard)))
    with pytest.raises(reader.ShardError, match=expected):
        list(reader.TarScan(str(shard)))
    errors: list[Exception] = []
    raws = list(reader.stream_raw([str(shard)], on_error=errors.append))
    assert [r.key for r in raws] == [sample.key]  # what came before the damage is kept
    assert len(errors) == 1 and expected in str(errors[0])
