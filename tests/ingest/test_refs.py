"""Input lines -> VideoRef: YouTube forms, refused input, safe and distinct ids."""

from __future__ import annotations

import re

import pytest

from ingest.refs import make_ref, redact

SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
YT_ID = "dQw4w9WgXcQ"


@pytest.mark.parametrize(
    "raw",
    [YT_ID, f"https://www.youtube.com/watch?v={YT_ID}&t=30s&list=PL123", f"https://youtu.be/{YT_ID}?t=4",
     f"https://youtube.com/shorts/{YT_ID}", f"https://m.youtube.com/watch?v={YT_ID}",
     f"https://www.youtube.com/embed/{YT_ID}", f"  {YT_ID}\n"],
)  # fmt: skip
def test_make_ref_reduces_youtube_forms_to_one_watch_url(raw):
    ref = make_ref(raw)
    assert ref == make_ref(YT_ID)
    assert (ref.video_id, ref.url) == (YT_ID, f"https://www.youtube.com/watch?v={YT_ID}")


@pytest.mark.parametrize(
    "raw",
    ["-o /tmp/x", "--exec rm", "--exec-rm-x", "-o", "file:///etc/passwd", "ftp://host/x.mp4",
     "javascript:alert(1)", "/etc/passwd", "", "   ", "http://", "https://www.youtube.com/@channel",
     "https://www.youtube.com/watch?v=short", "http://host/a b.mp4", "dQw4w9WgXc;"],
)  # fmt: skip
def test_make_ref_rejects_options_other_schemes_and_non_videos(raw):
    with pytest.raises(ValueError):
        make_ref(raw)


def test_make_ref_accepts_real_ids_that_start_with_a_dash():
    assert make_ref("-wtIMTCHWuI").url == "https://www.youtube.com/watch?v=-wtIMTCHWuI"


def test_make_ref_sanitizes_given_ids_and_keeps_them_distinct():
    bad = make_ref(YT_ID, video_id="../../etc;rm -rf /").video_id
    other = make_ref(YT_ID, video_id="../../etc;rm -rf ~").video_id
    assert SAFE_ID.fullmatch(bad) and SAFE_ID.fullmatch(other) and bad != other
    assert not bad.startswith("-") and "rm" in bad
    assert make_ref(YT_ID, video_id="-o").video_id != "-o"
    assert make_ref(YT_ID, video_id="clip_01").video_id == "clip_01"


def test_make_ref_derives_safe_stable_ids_for_other_urls():
    a = make_ref("http://127.0.0.1:8000/v/My Talk;rm.mp4".replace(" ", "%20"))
    b = make_ref("http://127.0.0.1:8000/other/My%20Talk;rm.mp4")
    assert SAFE_ID.fullmatch(a.video_id) and a.video_id.startswith("My")
    assert a.video_id != b.video_id and a == make_ref(a.url)
    assert a.url == "http://127.0.0.1:8000/v/My%20Talk;rm.mp4"


@pytest.mark.parametrize("captions", ["file:///etc/passwd", "ftp://h/x.vtt", " "])
def test_make_ref_rejects_sidecars_that_are_not_http_or_a_path(captions):
    with pytest.raises(ValueError):
        make_ref("http://127.0.0.1/x.mp4", captions=captions)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://user:pa55@host.example/v.mp4", "https://host.example/v.mp4"),
        ("http://tok@h/a.mp4?v=1&token=abc&X-Amz-Signature=s1&Expires=9",
         "http://h/a.mp4?v=1&token=REDACTED&X-Amz-Signature=REDACTED&Expires=9"),
        ("https://h/a.mp4?api_key=k&key=k2&keyword=cats", "https://h/a.mp4?api_key=REDACTED&key=REDACTED&keyword=cats"),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    ],
)  # fmt: skip
def test_credentials_are_downloaded_with_but_never_shown(url, shown):
    ref = make_ref(url)
    assert ref.url == url  # the real URL is what yt-dlp gets
    assert ref.shown_url == shown
    assert redact(f"HTTP Error 401 for {url}: denied") == f"HTTP Error 401 for {shown}: denied"


def test_the_id_does_not_depend_on_credentials():
    a = make_ref("https://u:one@h/v/clip.mp4?sig=1")
    b = make_ref("https://u:two@h/v/clip.mp4?sig=2")
    assert a.video_id == b.video_id == make_ref("https://h/v/clip.mp4?sig=REDACTED").video_id
    assert a.url != b.url


def test_local_sidecars_only_inside_captions_root(tmp_path):
    root = tmp_path / "subs"
    (root / "deep").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("x")
    (root / "link.vtt").symlink_to(tmp_path / "secret.txt")
    url = "http://127.0.0.1/x.mp4"
    assert make_ref(url, "deep/a.vtt", captions_root=str(root)).captions == str(root / "deep/a.vtt")
    inside = str(root / "deep" / "a.vtt")
    assert make_ref(url, inside, captions_root=str(root)).captions == inside
    for path in ("../secret.txt", str(tmp_path / "secret.txt"), "link.vtt", "/etc/passwd"):
        with pytest.raises(ValueError, match=r"outside ingest\.download\.captions_root"):
            make_ref(url, path, captions_root=str(root))
    with pytest.raises(ValueError, match="captions_root, which is not set"):
        make_ref(url, inside)
    assert make_ref(url, "https://h/x.vtt").captions == "https://h/x.vtt"  # URLs need no root
