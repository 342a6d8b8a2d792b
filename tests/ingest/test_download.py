"""Downloader: real yt-dlp against media served on 127.0.0.1 (no network, no mocks).

YouTube itself cannot be reached here. The YouTube tests use a `Downloader` whose
`extract_info` (the one call that asks the site's API) answers with a YouTube-shaped
info dict (what the extractor returns, with loopback URLs); the duration and caption
decisions, format selection and the downloads are the production code and yt-dlp's
real `process_ie_result`, the same calls production makes.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.networking.common import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import ExtractorError, GeoRestrictedError

from devtools.localserve import LocalServer
from devtools.mediagen import make_video, make_words, write_auto_vtt, write_manual_vtt
from ingest.captions import parse_captions
from ingest.config import ConfigError, DownloadConfig
from ingest.download import (
    Downloader,
    DownloadError,
    choose_captions,
    classify,
)
from ingest.refs import VideoRef, make_ref
from tests.helpers import YoutubeShaped

YT_ID = "dQw4w9WgXcQ"
FORMAT_FILES = ("f240.mp4", "f360.mp4", "f360big.mp4", "f720.mp4", "f360vo.mp4", "f360.webm")


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    clip = make_video(root / "clip.mp4", 3.0, width=320, height=240, fps=10)
    _ffmpeg("-i", str(clip), "-an", "-c", "copy", str(root / "video_only.mp4"))
    _ffmpeg("-i", str(clip), "-vn", "-c", "copy", str(root / "audio.m4a"))
    for name in FORMAT_FILES:  # same bytes; the requests counter shows which was taken
        shutil.copy(clip, root / name)
    words = make_words(3.0)
    write_auto_vtt(root / "auto.en.vtt", words)
    write_manual_vtt(root / "manual.en.vtt", words)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notvtt.txt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsrt, not vtt\n")
    (root / "page.html").write_text(
        "<html><head><title>Cooking</title></head><body><video src='clip.mp4'>"
        "<track kind='subtitles' srclang='en' src='manual.en.vtt'></video></body></html>"
    )
    return root


@pytest.fixture
def server(site: Path):
    with LocalServer(site) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def downloader(workdir: Path, info: dict | None = None, max_duration_s=1200.0, **cfg) -> Downloader:
    """A Downloader with fast retries; given `info`, one that stands in for YouTube."""
    cfg = {"backoff_s": 0.01, "backoff_max_s": 0.05, "socket_timeout_s": 5.0, **cfg}
    if info is None:
        return Downloader(DownloadConfig(**cfg), workdir, max_duration_s)
    return YoutubeShaped(info, DownloadConfig(**cfg), workdir, max_duration_s)


def fmt(server, fid, name, height, *, v="avc1.42001E", a="mp4a.40.2", size=0, ext="mp4"):
    return {"format_id": fid, "url": server.url(name), "ext": ext, "height": height,
            "width": height and height * 16 // 9, "vcodec": v, "acodec": a, "filesize": size, "protocol": "https"}  # fmt: skip


def youtube_info(server: LocalServer, **over) -> dict:
    """The shape yt-dlp's YouTube extractor returns, with loopback URLs."""
    info = {
        "id": YT_ID, "title": "How to knead dough", "description": "Bread.", "channel": "Baker",
        "uploader": "Baker", "duration": 3, "upload_date": "20240105", "live_status": "not_live",
        "webpage_url": f"https://www.youtube.com/watch?v={YT_ID}", "extractor": "youtube",
        "extractor_key": "Youtube", "view_count": 10, "thumbnails": [],
        "formats": [
            fmt(server, "240p", "f240.mp4", 240, size=1_000),
            fmt(server, "18", "f360.mp4", 360, size=3_000),
            fmt(server, "18b", "f360big.mp4", 360, size=5_000),
            fmt(server, "22", "f720.mp4", 720, size=9_000),
            fmt(server, "134", "f360vo.mp4", 360, a="none", size=500),
            fmt(server, "243", "f360.webm", 360, v="vp9", a="opus", size=400, ext="webm"),
        ],
        "automatic_captions": {
            "en-orig": [{"ext": "json3", "url": server.url("auto.json3"), "impersonate": True},
                        {"ext": "vtt", "url": server.url("auto.en.vtt"), "impersonate": True}],
            "fr": [{"ext": "vtt", "url": server.url("auto.en.vtt") + "?tlang=fr"}],
        },
        "subtitles": {"en-GB": [{"ext": "vtt", "url": server.url("manual.en.vtt")}]},
    }  # fmt: skip
    info.update(over)
    return info


# -- successful downloads ----------------------------------------------------------------


def test_direct_mp4_with_sidecar_url_gets_video_and_word_timed_captions(server, site, workdir):
    ref = make_ref(server.url("clip.mp4"), captions=server.url("auto.en.vtt"))
    got = downloader(workdir).download(ref)
    assert got.video_path.read_bytes() == (site / "clip.mp4").read_bytes()
    assert got.captions_path.read_bytes() == (site / "auto.en.vtt").read_bytes()
    assert got.caption_kind == "auto"  # the sidecar carries <00:00:01.234><c> word tags
    assert got.video_path.parent.parent == workdir
    assert got.info["title"] == "clip" and got.info["webpage_url"] == ref.url
    assert set(got.info) == {
        "title",
        "description",
        "channel",
        "duration",
        "upload_date",
        "webpage_url",
    }
    json.dumps(got.info)


def test_yt_dlp_options_from_the_configuration_reach_the_requests(server, site, workdir):
    """ingest.download.ytdlp is merged into the YoutubeDL that downloads: a header set
    there is what the loopback server receives."""
    login = base64.b64encode(b"montage:probe").decode()
    ytdlp = {"http_headers": {"Authorization": f"Basic {login}"}}
    ref = make_ref(server.url("clip.mp4"), captions=server.url("auto.en.vtt"))
    got = downloader(workdir, ytdlp=ytdlp).download(ref)
    assert got.video_path.read_bytes() == (site / "clip.mp4").read_bytes()
    assert server.logins("clip.mp4") == {"montage:probe"}
    plain = make_ref(server.url("f240.mp4"), captions=server.url("auto.en.vtt"))
    downloader(workdir).download(plain)
    assert server.logins("f240.mp4") == set(), "without the option, no such header"


def test_local_sidecar_path_is_copied_and_detected_as_manual(server, site, workdir):
    ref = make_ref(server.url("clip.mp4"), captions="manual.en.vtt", captions_root=str(site))
    got = downloader(workdir, captions_root=str(site)).download(ref)
    assert got.captions_path.read_bytes() == (site / "manual.en.vtt").read_bytes()
    assert got.caption_kind == "manual"


@pytest.mark.parametrize("root", [None, "sub"], ids=["no-root", "other-root"])
def test_local_sidecar_outside_captions_root_is_never_read(server, site, workdir, root):
    # a ref made by hand, past make_ref's own check: the downloader refuses it too
    ref = VideoRef("clip", server.url("clip.mp4"), captions=str(site / "manual.en.vtt"))
    (site / "sub").mkdir(exist_ok=True)
    dl = downloader(workdir, captions_root=None if root is None else str(site / root))
    with pytest.raises(DownloadError, match="captions_root") as err:
        dl.download(ref)
    assert err.value.category == "other"


def test_html_page_track_subtitles_come_through_the_generic_extractor(server, site, workdir):
    got = downloader(workdir).download(make_ref(server.url("page.html")))
    assert got.video_path.read_bytes() == (site / "clip.mp4").read_bytes()
    assert got.captions_path.read_bytes() == (site / "manual.en.vtt").read_bytes()
    assert got.caption_kind == "manual"
    assert got.info["title"].startswith("Cooking")
    assert server.requests("manual.en.vtt") == 1


def test_youtube_info_picks_smallest_360p_mp4_with_audio_and_the_vtt_asr(server, site, workdir):
    got = downloader(workdir, youtube_info(server)).download(make_ref(YT_ID))
    taken = {name: server.requests(name) for name in FORMAT_FILES}
    assert taken == {n: int(n == "f360.mp4") for n in FORMAT_FILES}
    assert got.video_path.suffix == ".mp4"
    assert got.caption_kind == "auto"
    assert got.captions_path.read_bytes() == (site / "auto.en.vtt").read_bytes()
    assert server.requests("manual.en.vtt") == server.requests("auto.json3") == 0
    assert got.info == {
        "title": "How to knead dough", "description": "Bread.", "channel": "Baker",
        "duration": 3, "upload_date": "20240105", "webpage_url": f"https://www.youtube.com/watch?v={YT_ID}",
    }  # fmt: skip


def test_youtube_info_chunked_formats_download_through_range_requests(server, site, workdir):
    info = youtube_info(server)
    for f in info["formats"]:  # YouTube asks for 10 MB chunks; here 8 KiB
        f["downloader_options"] = {"http_chunk_size": 8192}
    got = downloader(workdir, info).download(make_ref(YT_ID))
    size = (site / "f360.mp4").stat().st_size
    assert got.video_path.read_bytes() == (site / "f360.mp4").read_bytes()
    assert server.requests("f360.mp4") >= size // 8192


def test_youtube_info_max_height_is_configurable(server, workdir):
    downloader(workdir, youtube_info(server), max_height=240).download(make_ref(YT_ID))
    assert server.requests("f240.mp4") == 1 and server.requests("f360.mp4") == 0


def test_youtube_info_uses_manual_captions_when_preferred(server, site, workdir):
    dl = downloader(workdir, youtube_info(server), prefer_manual_captions=True)
    got = dl.download(make_ref(YT_ID))
    assert got.caption_kind == "manual"
    assert got.captions_path.read_bytes() == (site / "manual.en.vtt").read_bytes()
    assert server.requests("auto.en.vtt") == 0


def test_a_track_without_vtt_is_taken_as_json3_and_parses(server, site, workdir):
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "captions"
    shutil.copy(fixture / "youtube_auto.en.json3", site / "auto.json3")
    auto = {"en-orig": [{"ext": "srv3", "url": server.url("auto.srv3")},
                        {"ext": "json3", "url": server.url("auto.json3")}]}  # fmt: skip
    info = youtube_info(server, automatic_captions=auto, subtitles={})
    got = downloader(workdir, info).download(make_ref(YT_ID))
    assert got.captions_path.suffix == ".json3" and got.caption_kind == "auto"
    assert got.captions_path.read_bytes() == (site / "auto.json3").read_bytes()
    assert server.requests("auto.json3") == 1 and server.requests("auto.srv3") == 0
    assert [w.text for w in parse_captions(got.captions_path).words][:2] == ["so", "today"]


def test_youtube_info_falls_back_to_the_other_kind(server, workdir):
    dl = downloader(workdir, youtube_info(server, subtitles={}), prefer_manual_captions=True)
    got = dl.download(make_ref(YT_ID))
    assert got.caption_kind == "auto"


def test_youtube_info_merges_video_only_and_audio_when_no_single_mp4(server, workdir):
    formats = [
        fmt(server, "134", "video_only.mp4", 360, a="none", size=500),
        fmt(server, "140", "audio.m4a", None, v="none", size=300, ext="m4a"),
    ]
    got = downloader(workdir, youtube_info(server, formats=formats)).download(make_ref(YT_ID))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
         str(got.video_path)], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sorted(probe.stdout.split()) == ["audio", "video"]
    assert got.video_path.suffix == ".mp4"


def test_session_removes_the_video_folder_after_success(server, workdir):
    dl = downloader(workdir, youtube_info(server))
    with dl.session(make_ref(YT_ID)) as got:
        assert got.video_path.is_file() and got.captions_path.is_file()
    assert not got.video_path.parent.exists()
    assert list(workdir.iterdir()) == []


def test_session_removes_the_video_folder_when_the_body_raises(server, workdir, site):
    dl = downloader(workdir, captions_root=str(site))
    ref = make_ref(
        server.url("clip.mp4"), captions=str(site / "auto.en.vtt"), captions_root=str(site)
    )
    with pytest.raises(RuntimeError, match="boom"), dl.session(ref) as got:
        raise RuntimeError("boom")
    assert not got.video_path.parent.exists()
    assert list(workdir.iterdir()) == []


# -- failures -----------------------------------------------------------------------------


def test_404_is_unavailable_and_not_retried(server, workdir):
    with pytest.raises(DownloadError) as err:
        downloader(workdir, retries=3).download(make_ref(server.url("gone.mp4")))
    assert (err.value.category, err.value.transient) == ("unavailable", False)
    assert server.requests("gone.mp4") == 1
    assert list(workdir.iterdir()) == []  # the failed attempt's folder is gone


def test_429_twice_then_success_is_retried_and_succeeds(server, workdir):
    server.fail("f360.mp4", 429, times=2)
    got = downloader(workdir, youtube_info(server), retries=3).download(make_ref(YT_ID))
    assert got.video_path.is_file()
    assert server.requests("f360.mp4") == 3
    assert len(list(workdir.iterdir())) == 1  # failed attempts left nothing behind


def test_429_past_the_retries_is_rate_limited_with_retry_after(server, workdir):
    server.fail("f360.mp4", 429, times=5, retry_after=7)
    with pytest.raises(DownloadError) as err:
        downloader(workdir, youtube_info(server), retries=1).download(make_ref(YT_ID))
    assert (err.value.category, err.value.transient) == ("rate_limited", True)
    assert err.value.retry_after_s == 7.0
    assert server.requests("f360.mp4") == 2
    assert list(workdir.iterdir()) == []


def test_503_is_a_transient_network_failure_retried_until_exhausted(server, workdir):
    server.fail("clip.mp4", 503, times=10)
    ref = make_ref(server.url("clip.mp4"), captions=server.url("auto.en.vtt"))
    with pytest.raises(DownloadError) as err:
        downloader(workdir, retries=2).download(ref)
    assert (err.value.category, err.value.transient) == ("network", True)
    assert server.requests("clip.mp4") == 3
    assert list(workdir.iterdir()) == []


def test_too_long_is_decided_before_any_download(server, workdir):
    info = youtube_info(server, duration=3600)
    with pytest.raises(DownloadError) as err:
        downloader(workdir, info, max_duration_s=1200).download(make_ref(YT_ID))
    assert (err.value.category, err.value.transient) == ("too_long", False)
    assert server.requests("f360.mp4") == server.requests("auto.en.vtt") == 0
    # and with the filter off, the same video downloads
    downloader(workdir, info, max_duration_s=None).download(make_ref(YT_ID))


def test_live_streams_are_unavailable(server, workdir):
    info = youtube_info(server, live_status="is_live", is_live=True)
    with pytest.raises(DownloadError, match="live") as err:
        downloader(workdir, info).download(make_ref(YT_ID))
    assert err.value.category == "unavailable"


def test_no_english_asr_is_no_captions_before_media(server, workdir):
    # A German video: YouTube lists an "en" track, but it is a machine translation.
    auto = {
        "de-orig": [{"ext": "vtt", "url": server.url("auto.en.vtt") + "?lang=de"}],
        "en": [{"ext": "vtt", "url": server.url("auto.en.vtt") + "?lang=de&tlang=en"}],
    }
    info = youtube_info(server, automatic_captions=auto, subtitles={})
    with pytest.raises(DownloadError) as err:
        downloader(workdir, info).download(make_ref(YT_ID))
    assert (err.value.category, err.value.transient) == ("no_captions", False)
    assert server.requests("f360.mp4") == server.requests("auto.en.vtt") == 0


def test_direct_url_without_sidecar_is_no_captions(server, workdir):
    with pytest.raises(DownloadError) as err:
        downloader(workdir).download(make_ref(server.url("clip.mp4")))
    assert err.value.category == "no_captions"
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("sidecar", "category", "transient"),
    [("missing.vtt", "no_captions", False), ("boom.vtt", "network", True)],
)  # fmt: skip
def test_bad_sidecars_fail_with_a_category(server, site, workdir, sidecar, category, transient):
    if sidecar == "boom.vtt":
        server.fail("boom.vtt", 503, times=5)
    ref = make_ref(server.url("clip.mp4"), captions=server.url(sidecar))
    with pytest.raises(DownloadError) as err:
        downloader(workdir, retries=1).download(ref)
    assert (err.value.category, err.value.transient) == (category, transient)
    assert server.requests(sidecar) == (2 if transient else 1)
    assert server.requests("clip.mp4") == (2 if transient else 1)  # the probe, not the media
    assert list(workdir.iterdir()) == []


def test_a_sidecar_that_is_not_vtt_is_handed_on_for_the_parser_to_judge(server, workdir):
    # whether captions parse is decided (and recorded as malformed_captions) by the core
    ref = make_ref(server.url("clip.mp4"), captions=server.url("notvtt.txt"))
    with downloader(workdir).session(ref) as got:
        assert got.captions_path is not None and got.captions_path.exists()
        assert got.caption_kind == "manual"
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("youtube", [True, False])
def test_an_empty_media_file_is_corrupt_media_and_not_retried(server, workdir, youtube):
    formats = [fmt(server, "18", "empty.mp4", 360)]
    site = youtube_info(server, formats=formats) if youtube else None
    dl = downloader(workdir, site, retries=2)
    with pytest.raises(DownloadError) as err:
        if youtube:
            dl.download(make_ref(YT_ID))
        else:
            dl.download(make_ref(server.url("empty.mp4"), captions=server.url("auto.en.vtt")))
    assert (err.value.category, err.value.transient) == ("corrupt_media", False)
    assert server.requests("empty.mp4") == (1 if youtube else 2)  # (+ the probe) one attempt
    assert list(workdir.iterdir()) == []


def test_caption_404_from_youtube_is_no_captions(server, workdir):
    server.fail("auto.en.vtt", 404)
    with pytest.raises(DownloadError) as err:
        downloader(workdir, youtube_info(server)).download(make_ref(YT_ID))
    assert err.value.category == "no_captions"
    assert server.requests("f360.mp4") == 0  # captions come first


def test_client_is_built_lazily(workdir):
    dl = downloader(workdir)
    assert dl._clients == {} and not workdir.exists()


# -- classify, captions choice, backoff, config ------------------------------------------------


def _http_error(status: int) -> HTTPError:
    return HTTPError(Response(None, "http://x", {}, status=status))


def _wrapped(exc: BaseException) -> yt_dlp.utils.DownloadError:
    """The way YoutubeDL.report_error wraps an extractor or downloader error."""
    try:
        raise exc
    except BaseException as e:
        return yt_dlp.utils.DownloadError(f"ERROR: {e}", sys.exc_info())


@pytest.mark.parametrize(
    ("exc", "category", "transient"),
    [
        (ExtractorError("Private video. Sign in if you've been granted access to this video"), "private", False),
        (ExtractorError("Sign in to confirm you’re not a bot. Use --cookies"), "sign_in", False),
        (ExtractorError("Sign in to confirm your age. This video may be inappropriate"), "sign_in", False),
        (GeoRestrictedError("This video is not available"), "geo_blocked", False),
        (ExtractorError("The uploader has not made this video available in your country"), "geo_blocked", False),
        (ExtractorError("Video unavailable. This video has been removed by the uploader"), "unavailable", False),
        (ExtractorError("This content isn't available, try again later."), "rate_limited", True),
        (ExtractorError("Unable to download webpage: HTTP Error 429: Too Many Requests"), "rate_limited", True),
        (ExtractorError("Unable to download webpage", cause=_http_error(429)), "rate_limited", True),
        (ExtractorError("Unable to download webpage", cause=_http_error(503)), "network", True),
        (ExtractorError("Unable to download webpage", cause=_http_error(404)), "unavailable", False),
        (TransportError("Connection reset by peer"), "network", True),
        (TimeoutError("The read operation timed out"), "network", True),
        (ExtractorError("Requested format is not available"), "other", False),
        (yt_dlp.utils.DownloadError("Did not get any data blocks"), "corrupt_media", False),
    ],
)  # fmt: skip
def test_classify_maps_ytdlp_failures_to_the_taxonomy(exc, category, transient):
    for candidate in (exc, _wrapped(exc)):
        err = classify(candidate)
        assert (err.category, err.transient) == (category, transient), candidate
        assert not err.message.startswith("ERROR:")


def test_choose_captions_ranks_orig_then_exact_then_region():
    info = {"automatic_captions": {k: [{"ext": "vtt", "url": f"http://h/{k}.vtt"}]
                                   for k in ("en-US", "en", "en-orig", "es")}}  # fmt: skip
    assert choose_captions(info, ("en",), False)[:2] == ("auto", "en-orig")
    del info["automatic_captions"]["en-orig"]
    assert choose_captions(info, ("en",), False)[:2] == ("auto", "en")
    assert choose_captions(info, ("es", "en"), True)[:2] == ("auto", "es")
    assert (
        choose_captions({"subtitles": {"en": [{"ext": "srv3", "url": "u"}]}}, ("en",), True) is None
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap(workdir):
    dl = downloader(workdir, backoff_s=1.0, backoff_max_s=10.0)
    for attempt, full in enumerate([1.0, 2.0, 4.0, 8.0, 10.0, 10.0]):
        waits = [dl.backoff(attempt) for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits), (attempt, waits)
        assert len(set(waits)) > 1
    assert dl.backoff(0, retry_after_s=5.0) == 5.0
    assert dl.backoff(0, retry_after_s=500.0) == 10.0


@pytest.mark.parametrize(
    "bad", [{"max_height": 0}, {"caption_langs": ()}, {"caption_langs": ("en.*",)}, {"retries": -1}]
)
def test_download_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match=f"^{next(iter(bad))} must"):
        DownloadConfig(**bad)
