"""Download one video and its English captions with yt-dlp.

Input lines become `VideoRef`s (`ingest.refs.make_ref`); the only thing from the input
that reaches yt-dlp is the ref's URL, as the sole positional argument. `Downloader.download` runs
one attempt as: extract the info dict (no media), decide "too long" and the
caption track from it, then let yt-dlp's own `process_ie_result` select the format
and download media and captions into a fresh per-video folder. Transient failures
(429, 5xx, timeouts, an attempt past its deadline or under the minimum rate:
`ingest.transfer`) are retried with exponential backoff; every failure surfaces
as a `DownloadError` with a category from a small taxonomy, so a pipeline can
record it as data. Each attempt passes the worker's `ingest.gate.Gate` first: its
circuit breaker, its proxy and its pace under the job's request budget.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yt_dlp
from yt_dlp.networking import Request
from yt_dlp.networking.exceptions import CertificateVerifyError, HTTPError, TransportError
from yt_dlp.utils import GeoRestrictedError, determine_ext

from ingest import ytdlp_options
from ingest.config import DownloadConfig
from ingest.gate import Gate, Skip, copy_cookies
from ingest.refs import VideoRef, sidecar_path
from ingest.transfer import BoundedYoutubeDL, TooSlow, Watch

log = logging.getLogger(__name__)

CATEGORIES = frozenset(
    "unavailable private sign_in geo_blocked no_captions too_long network rate_limited corrupt_media timeout other".split()  # noqa: SIM905
)
TRANSIENT = frozenset({"network", "rate_limited"})
INFO_KEYS = ("title", "description", "channel", "duration", "upload_date", "webpage_url")
MAX_CAPTION_BYTES = 20 * 1024 * 1024

_WORD_TAG = re.compile(r"<\d{2}:\d{2}:\d{2}\.\d{3}><c>")
_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})")
# Message phrases, in priority order ("Private video. Sign in if you've been granted
# access" is private; a 404 on the subtitle URL is no_captions, not unavailable).
_PHRASES = (
    ("rate_limited", ("too many requests", "try again later", "rate-limit")),
    ("corrupt_media", ("did not get any data",)),  # an empty body, sent in full: not transient
    ("network", ("timed out", "connection reset", "remote end closed")),
    ("private", ("private video", "members-only", "join this channel")),
    ("geo_blocked", ("in your country", "from your location", "geo restrict")),
    ("sign_in", ("sign in", "not a bot", "confirm your age", "login required")),
    ("no_captions", ("unable to download video subtitles",)),
    ("unavailable", ("video unavailable", "been removed", "no longer available", "live event")),
    ("unavailable", ("premieres in",)),
)


@dataclass(frozen=True, slots=True)
class Downloaded:
    ref: VideoRef
    video_path: Path
    captions_path: Path | None
    caption_kind: str | None  # "auto" (word-timed ASR) | "manual" | None
    info: dict[str, Any]  # INFO_KEYS only, JSON-serializable


class DownloadError(Exception):
    """A failed download, with a category a manifest can record."""

    def __init__(
        self,
        category: str,
        message: str,
        transient: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown download failure category {category!r}")
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message
        self.transient = category in TRANSIENT if transient is None else transient
        self.retry_after_s = retry_after_s


# -- exceptions -> taxonomy ------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps (yt-dlp's exc_info and cause, Python's chain)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        info = getattr(e, "exc_info", None)
        todo += [info[1] if isinstance(info, tuple) and len(info) > 1 else None]
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


def _clean(msg: str) -> str:
    msg = msg.removeprefix("ERROR: ").split("; please report this issue")[0].strip()
    return msg[:500]


def classify(exc: BaseException) -> DownloadError:
    """Map a yt-dlp (or network) exception to a DownloadError of the taxonomy."""
    if isinstance(exc, DownloadError):
        return exc
    chain = list(_causes(exc))
    if slow := next((e for e in chain if isinstance(e, TooSlow)), None):
        return DownloadError("network", str(slow))
    text = " | ".join(str(e) for e in chain).lower()
    message = _clean(str(exc) or type(exc).__name__)
    status, retry_after = None, None
    for e in chain:
        if isinstance(e, HTTPError):
            status = e.status
            value = e.response.headers.get("Retry-After", "") if e.response else ""
            retry_after = float(value) if value.strip().isdigit() else None
            break
        if isinstance(getattr(e, "code", None), int) and 100 <= e.code < 600:  # urllib
            status = e.code
            break
    if status is None and (m := _HTTP_STATUS.search(text)):
        status = int(m.group(1))

    if status == 429:
        category = "rate_limited"
    elif status is not None and (500 <= status < 600 or status == 403):
        category = "network"  # a 403 on YouTube media is mostly an expired URL or throttling
    elif any(isinstance(e, TransportError | TimeoutError | ConnectionError) for e in chain):
        ok_tls = not any(isinstance(e, CertificateVerifyError) for e in chain)
        category = "network" if ok_tls else "other"
    elif any(isinstance(e, GeoRestrictedError) for e in chain):
        category = "geo_blocked"
    else:
        found = (c for c, phrases in _PHRASES if any(p in text for p in phrases))
        category = next(found, "unavailable" if status in (404, 410) else "other")
    return DownloadError(category, message, retry_after_s=retry_after)


# -- caption choice -------------------------------------------------------------------


def _lang_rank(key: str, langs: tuple[str, ...]) -> int | None:
    """Rank a caption key: <lang>-orig (YouTube's original ASR), <lang>, <lang>-<REGION>."""
    for i, lang in enumerate(langs):
        for j, pattern in enumerate((rf"{lang}-orig", lang, rf"{lang}-[A-Z0-9]{{2,3}}")):
            if re.fullmatch(pattern, key):
                return 3 * i + j
    return None


CAPTION_EXTS = ("vtt", "json3")  # a track's formats, preferred first (json3: word offsets)


def _caption_format(formats: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The VTT entry of a caption track, else its json3 one; never a machine translation
    (tlang=)."""
    for ext in CAPTION_EXTS:
        for f in reversed(formats or []):
            url = f.get("url")
            if not url or (f.get("ext") or determine_ext(url)) != ext:
                continue
            if "tlang" not in parse_qs(urlsplit(url).query):
                return f
    return None


def choose_captions(
    info: dict[str, Any], langs: tuple[str, ...], prefer_manual: bool
) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, language key, format) of the best track, the preferred kind first."""
    best = None
    for kind, field in (("manual", "subtitles"), ("auto", "automatic_captions")):
        kind_rank = 0 if (kind == "manual") == prefer_manual else 1
        for key, formats in (info.get(field) or {}).items():
            rank = _lang_rank(key, langs)
            fmt = _caption_format(formats) if rank is not None else None
            if fmt is not None and (best is None or (kind_rank, rank) < best[0]):
                best = ((kind_rank, rank), kind, key, fmt)
    return None if best is None else best[1:]


def _kind_of(path: Path, kind: str | None) -> str:
    """'auto' when yt-dlp took ASR captions or the file carries word time tags."""
    # Whether the file parses is the caption parser's call (a malformed file is a
    # recorded failure, not a video without captions).
    head = path.read_text(encoding="utf-8-sig", errors="replace")
    return "auto" if kind == "auto" or _WORD_TAG.search(head) else "manual"


# -- yt-dlp ---------------------------------------------------------------------------


class _YtdlpLog:
    """yt-dlp's logger interface, routed to `logging`. Its errors are re-raised as
    DownloadError and recorded by the pipeline, so they are logged at INFO here."""

    _log = logging.getLogger(__name__ + ".ytdlp")

    def debug(self, msg: str) -> None:
        self._log.debug(msg.removeprefix("[debug] "))

    def info(self, msg: str) -> None:
        self._log.debug(msg)

    def warning(self, msg: str) -> None:
        noise = "Falling back on generic information extractor" in msg
        self._log.log(logging.DEBUG if noise else logging.WARNING, msg)

    def error(self, msg: str) -> None:
        self._log.info(msg)


def ytdlp_params(cfg: DownloadConfig) -> dict[str, Any]:
    """YoutubeDL options. Format: an mp4 with audio at the largest height <= max_height
    (`res:H` also handles portrait video), the smallest file among those; a merged
    mp4 video + m4a audio if no such single file exists."""
    params: dict[str, Any] = {
        "format": "b[ext=mp4]/bv*[ext=mp4]+ba[ext=m4a]/b/bv*+ba",
        "format_sort": [f"res:{cfg.max_height}", "vcodec:h264", "+size", "+br"],
        "merge_output_format": "mp4",
        "writesubtitles": True,
        "writeautomaticsub": True,
        "subtitleslangs": ["all"],  # the info dict handed over holds only the chosen track
        "subtitlesformat": "/".join(CAPTION_EXTS),
        "outtmpl": {"default": "media.%(ext)s"},
        "restrictfilenames": True,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "updatetime": False,
        "socket_timeout": cfg.socket_timeout_s,
        "retries": 1,  # one in-place resume; our own backoff does the real retrying
        "fragment_retries": 3,
        "extractor_retries": 1,
        "extractor_args": {"youtube": {"skip": ["translated_subs"]}},
        "logger": _YtdlpLog(),
    }
    if cfg.sleep_interval_s:
        params["sleep_interval"] = cfg.sleep_interval_s
    if cfg.proxy:
        params["proxy"] = cfg.proxy
    if cfg.cookies_file:
        params["cookiefile"] = cfg.cookies_file
    return ytdlp_options.merge(params, cfg.ytdlp)  # the user's ingest.download.ytdlp


class Downloader:
    """Downloads VideoRefs into per-video folders under `workdir`. Not thread-safe:
    use one per worker (e.g. built in a Beam DoFn.setup()).

    ``max_duration_s`` (the core's ``filters.max_duration_s``; None: no limit) turns a
    longer video into a ``too_long`` failure before any of its media is fetched.
    """

    def __init__(
        self, cfg: DownloadConfig, workdir: Path, max_duration_s: float | None = None
    ) -> None:
        self.cfg = cfg
        self.workdir = Path(workdir)
        self.max_duration_s = max_duration_s
        self.gate = Gate(cfg)  # breaker, proxy pool, pacing (ingest.gate)
        self._proxy: str | None = None  # the proxy of the attempt under way
        self._clients: dict[str | None, BoundedYoutubeDL] = {}

    def _client(self) -> BoundedYoutubeDL:
        """The yt-dlp client of the current proxy, with its own copy of the cookies."""
        if self._proxy not in self._clients:
            params = ytdlp_params(self.cfg)
            if self._proxy is not None:
                params["proxy"] = self._proxy
            if self.cfg.cookies_file:
                params["cookiefile"] = str(copy_cookies(self.cfg.cookies_file, self.workdir))
            self._clients[self._proxy] = BoundedYoutubeDL(params)
        return self._clients[self._proxy]

    def close(self) -> None:
        while self._clients:
            self._clients.popitem()[1].close()

    def backoff(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry `attempt` (0-based): equal jitter, capped."""
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2**attempt)
        delay = delay / 2 + random.uniform(0, delay / 2)
        return min(self.cfg.backoff_max_s, max(delay, retry_after_s or 0.0))

    def download(self, ref: VideoRef) -> Downloaded:
        """Download `ref`, retrying transient failures. The caller owns the files
        (see `session` and `cleanup`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.cfg.retries + 1):
            try:
                self._proxy = self.gate.enter()
            except Skip as exc:  # left for --retry-failed
                said = "not tried" if attempt == 0 else "not retried"
                raise DownloadError("rate_limited", f"{said}: {exc}", transient=False) from None
            vdir = Path(tempfile.mkdtemp(prefix=f"{ref.video_id}.", dir=self.workdir))
            watch = Watch(
                self.cfg.download_deadline_s,
                self.cfg.min_rate_kb_s * 1000,
                self.cfg.min_rate_grace_s,
            )
            try:
                with self._client().watched(watch):
                    got = self._attempt(ref, vdir)
                self.gate.leave(self._proxy, None)
                return got
            except BaseException as exc:
                shutil.rmtree(vdir, ignore_errors=True)
                # past the deadline, whatever the interrupted read raised is the deadline's doing
                err = classify(watch.failure or exc) if isinstance(exc, Exception) else None
                if err is None:
                    raise
                self.gate.leave(self._proxy, err.category)
                if not err.transient or attempt == self.cfg.retries:
                    raise err from exc
                wait = self.backoff(attempt, err.retry_after_s)
                log.info("%s: %s; retry %d in %.2f s", ref.video_id, err, attempt + 1, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    @contextmanager
    def session(self, ref: VideoRef) -> Iterator[Downloaded]:
        """Download, yield, and always remove this video's files afterwards."""
        got = self.download(ref)
        try:
            yield got
        finally:
            self.cleanup(got)

    def cleanup(self, got: Downloaded) -> None:
        folder = got.video_path.parent
        if folder.resolve().is_relative_to(self.workdir.resolve()) and folder.name.startswith(
            got.ref.video_id + "."
        ):
            shutil.rmtree(folder, ignore_errors=True)

    def extract_info(self, url: str) -> dict[str, Any]:
        """The site's description of one video (formats, caption tracks, duration), no media.

        The one step that asks the video site's API; everything after it (the
        duration and caption decisions, yt-dlp's format selection, the downloads)
        works from this dict.
        """
        return self._client().extract_info(url, download=False, process=False)

    def _attempt(self, ref: VideoRef, vdir: Path) -> Downloaded:
        ydl = self._client()
        ydl.params["paths"] = {"home": str(vdir)}
        info = self.extract_info(ref.url)
        kind = info.get("_type", "video")
        if kind == "playlist":
            raise DownloadError("other", f"{ref.url} is a playlist, not one video")
        if kind != "video":  # a redirect to another page: resolve it, still without media
            info = ydl.process_ie_result(info, download=False)
        self._check_playable(info)

        if ref.captions is not None:
            choice = None
            cap_path = self._fetch_sidecar(ydl, ref.captions, vdir)
            _kind_of(cap_path, None)  # a sidecar that is not WebVTT fails before any media
        else:
            choice = choose_captions(info, self.cfg.caption_langs, self.cfg.prefer_manual_captions)
            if choice is None:
                raise DownloadError(
                    "no_captions", f"no {'/'.join(self.cfg.caption_langs)} VTT or json3 captions"
                )
            cap_path = None
        # Hand yt-dlp only the chosen track, so its own selection cannot pick another.
        cap_kind, cap_lang, cap_fmt = choice or (None, None, None)
        info["subtitles"] = {cap_lang: [dict(cap_fmt)]} if cap_kind == "manual" else {}
        info["automatic_captions"] = {cap_lang: [dict(cap_fmt)]} if cap_kind == "auto" else {}

        result = ydl.process_ie_result(info, download=True)
        downloads = result.get("requested_downloads") or []
        video = Path(downloads[0]["filepath"]) if downloads else None
        if video is None or not video.is_file():
            raise DownloadError("other", "yt-dlp reported no media file")
        if video.stat().st_size == 0:
            raise DownloadError("corrupt_media", "the media file is empty")
        if cap_path is None:
            sub = (result.get("requested_subtitles") or {}).get(cap_lang) or {}
            cap_path = Path(sub["filepath"]) if sub.get("filepath") else None
            if cap_path is None or not cap_path.is_file():
                raise DownloadError("no_captions", f"captions {cap_lang!r} were not written")
        meta = {k: result.get(k) for k in INFO_KEYS} | {
            "channel": result.get("channel") or result.get("uploader")
        }
        return Downloaded(ref, video, cap_path, _kind_of(cap_path, cap_kind), meta)

    def _check_playable(self, info: dict[str, Any]) -> None:
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise DownloadError("unavailable", f"live or upcoming: {info.get('live_status')}")
        duration, limit = info.get("duration"), self.max_duration_s
        if limit is not None and isinstance(duration, int | float) and duration > limit:
            raise DownloadError("too_long", f"duration {duration:.0f} s > {limit:.0f} s")

    def _fetch_sidecar(self, ydl: yt_dlp.YoutubeDL, source: str, vdir: Path) -> Path:
        """Copy a VTT sidecar (URL via yt-dlp's networking: proxy, cookies, timeout) here."""
        dest = vdir / "sidecar.vtt"
        if urlsplit(source).scheme.lower() in ("http", "https"):
            try:
                with ydl.urlopen(Request(source)) as resp:
                    data = resp.read(MAX_CAPTION_BYTES + 1)
            except HTTPError as exc:
                if exc.status in (404, 410):
                    raise DownloadError(
                        "no_captions", f"sidecar {source}: HTTP {exc.status}"
                    ) from exc
                raise
        else:
            try:
                path = sidecar_path(source, self.cfg.captions_root)
            except ValueError as exc:
                raise DownloadError("other", str(exc)) from None
            if not path.is_file():
                raise DownloadError("no_captions", f"sidecar {source} does not exist")
            with path.open("rb") as fh:
                data = fh.read(MAX_CAPTION_BYTES + 1)
        if not data or len(data) > MAX_CAPTION_BYTES:
            raise DownloadError("no_captions", f"sidecar {source} is empty or too large")
        dest.write_bytes(data)
        return dest
