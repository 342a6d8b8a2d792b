"""ingest.transfer: a download attempt's deadline and minimum rate, through the real
Downloader and yt-dlp, against a real server on 127.0.0.1 that sends its body slowly.

A test that waits on a download runs it in a thread and gives up on it after a long
while (`FINISHED_WITHIN_S`, far above what it needs): without the bounds, the slow
server would hold the download for hours.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools.mediagen import make_video, make_words, write_auto_vtt
from ingest.config import ConfigError
from ingest.download import DownloadConfig, DownloadError, classify
from ingest.refs import make_ref
from ingest.transfer import TooSlow, Watch
from tests.helpers import YoutubeShaped

YT_ID = "dQw4w9WgXcQ"
DECLARED = 50_000_000  # the Content-Length the slow server announces
FINISHED_WITHIN_S = 120.0


class SlowServer:
    """Serves `/slow/<name>` as `piece` bytes every `every_s` seconds of a body it
    declares as 50 MB, and the files under `root` at any other path, at full speed."""

    def __init__(self, root: Path, piece: int = 1, every_s: float = 0.2) -> None:
        self.root, self.piece, self.every_s = root, piece, every_s
        self.stopping = threading.Event()
        self.requests: Counter[str] = Counter()
        self.sent: list[int] = []  # body bytes of each slow response (complete once closed)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = False  # server_close() waits for them: `sent` is whole
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                with owner._lock:
                    owner.requests[name] += 1
                if name.startswith("slow/"):
                    self._drip()
                    return
                data = (owner.root / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drip(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(DECLARED))
                self.end_headers()
                sent = 0
                try:
                    while sent < DECLARED and not owner.stopping.wait(owner.every_s):
                        self.wfile.write(b"\0" * owner.piece)
                        self.wfile.flush()
                        sent += owner.piece
                except OSError:  # the client went away
                    pass
                with owner._lock:
                    owner.sent.append(sent)

        return Handler

    def __enter__(self) -> SlowServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_video(root / "clip.mp4", 2.0, width=160, height=120, fps=5)
    write_auto_vtt(root / "auto.en.vtt", make_words(2.0))
    return root


def info(server: SlowServer, media: str) -> dict[str, Any]:
    """A YouTube-shaped info dict (what the extractor returns) with loopback URLs."""
    return {
        "id": YT_ID, "title": "t", "duration": 2, "extractor": "youtube", "extractor_key": "Youtube",
        "webpage_url": f"https://www.youtube.com/watch?v={YT_ID}", "subtitles": {},
        "formats": [{"format_id": "18", "url": server.url(media), "ext": "mp4", "height": 360,
                     "width": 640, "vcodec": "avc1.42001E", "acodec": "mp4a.40.2", "protocol": "https"}],
        "automatic_captions": {"en": [{"ext": "vtt", "url": server.url("auto.en.vtt")}]},
    }  # fmt: skip


def run_bounded(fn: Callable[[], Any]) -> Any:
    """fn() in a thread; its result or exception, failing the test if it never returns."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except Exception as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(FINISHED_WITHIN_S)
    assert not thread.is_alive(), "the download was not stopped"
    if "error" in out:
        raise out["error"]
    return out["result"]


def downloader(tmp_path: Path, **cfg: Any) -> YoutubeShaped:
    cfg = {"retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.05, "socket_timeout_s": 5, **cfg}
    return YoutubeShaped(None, DownloadConfig(**cfg), tmp_path / "work")


def fetch(dl: YoutubeShaped, site_info: dict) -> Any:
    """Download the YouTube id whose info dict (the site's answer) is ``site_info``."""
    dl.info = site_info
    return dl.download(make_ref(YT_ID))


def dripping(site: Path) -> SlowServer:
    return SlowServer(site, piece=1, every_s=0.2)  # 5 bytes/s: never a silence to time out


@pytest.mark.parametrize("handler", ["requests", "urllib"])
def test_media_dripping_bytes_is_stopped_at_the_deadline_and_retried(site, tmp_path, handler):
    dl = downloader(tmp_path, download_deadline_s=1.5, min_rate_kb_s=0)
    if handler == "urllib":  # yt-dlp's own handler, used where requests is not installed
        dl._client().params["compat_opts"] = {"prefer-legacy-http-handler"}
    with dripping(site) as server:
        with dl._client().urlopen(server.url("clip.mp4")) as response:
            assert type(response).__name__.lower().startswith(handler)
        with pytest.raises(DownloadError) as err:
            run_bounded(lambda: fetch(dl, info(server, "slow/f18.mp4")))
    assert (err.value.category, err.value.transient) == ("network", True)
    assert "deadline of 1.5 s" in err.value.message
    assert server.requests["slow/f18.mp4"] == 3  # the first attempt and 2 retries
    assert len(server.sent) == 3 and max(server.sent) < 1000  # each cut short of its 50 MB
    assert list((tmp_path / "work").iterdir()) == []


def test_a_dripping_sidecar_is_stopped_at_the_deadline(site, tmp_path):
    dl = downloader(tmp_path, download_deadline_s=1.5, min_rate_kb_s=0, retries=1)
    with dripping(site) as server, pytest.raises(DownloadError) as err:
        ref = make_ref(server.url("clip.mp4"), captions=server.url("slow/captions.vtt"))
        run_bounded(lambda: dl.download(ref))
    assert (err.value.category, err.value.transient) == ("network", True)
    # Two attempts, each probing the media first; under a heavy load the second attempt's
    # deadline may pass before it reaches the sidecar, so that one may not be asked again.
    assert server.requests["clip.mp4"] == 2  # the probe of each attempt; no media fetched
    assert server.requests["slow/captions.vtt"] in (1, 2)
    assert len(server.sent) == server.requests["slow/captions.vtt"] and max(server.sent) < 1000


def test_media_under_the_minimum_rate_is_stopped_after_the_grace(site, tmp_path):
    dl = downloader(tmp_path, download_deadline_s=600, min_rate_kb_s=50, min_rate_grace_s=0.5)
    with SlowServer(site, piece=200, every_s=0.1) as slow, pytest.raises(DownloadError) as err:
        run_bounded(lambda: fetch(dl, info(slow, "slow/f18.mp4")))
    assert (err.value.category, err.value.transient) == ("network", True)
    assert "under the minimum of 50 kB/s" in err.value.message
    assert slow.requests["slow/f18.mp4"] == 3
    assert len(slow.sent) == 3 and max(slow.sent) < 50_000


def test_a_normal_server_downloads_within_tight_bounds(site, tmp_path):
    with SlowServer(site) as server:
        dl = downloader(tmp_path, download_deadline_s=60, min_rate_kb_s=1, min_rate_grace_s=0)
        got = run_bounded(lambda: fetch(dl, info(server, "clip.mp4")))
    assert got.video_path.read_bytes() == (site / "clip.mp4").read_bytes()
    assert got.captions_path.read_bytes() == (site / "auto.en.vtt").read_bytes()
    assert server.requests["clip.mp4"] == 1


def test_watch_raises_too_slow_past_its_deadline_and_under_its_rate():
    with Watch(deadline_s=0.05) as watch:
        watch.check()  # in time
        time.sleep(0.1)
        with pytest.raises(TooSlow, match="deadline"):
            watch.progress({"status": "downloading", "downloaded_bytes": 1, "elapsed": 0.1})
    slow = Watch(deadline_s=None, min_rate_bytes_s=1000, grace_s=10)
    slow.progress({"status": "downloading", "downloaded_bytes": 10, "elapsed": 5})  # in grace
    slow.progress({"status": "downloading", "downloaded_bytes": 20_000, "elapsed": 15})
    with pytest.raises(TooSlow, match="under the minimum"):
        slow.progress({"status": "downloading", "downloaded_bytes": 100, "elapsed": 15})
    assert classify(slow.failure).category == "network"
    with pytest.raises(TooSlow):
        slow.check()  # once stopped, stopped


@pytest.mark.parametrize(
    "bad", [{"download_deadline_s": 0}, {"min_rate_kb_s": -1}, {"min_rate_grace_s": -1}]
)
def test_download_config_rejects_bad_bounds(bad):
    with pytest.raises(ConfigError):
        DownloadConfig(**bad)
