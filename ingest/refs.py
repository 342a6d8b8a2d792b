"""Input lines -> `VideoRef`: which video a line names, and a safe id for it.

Only a YouTube id, a YouTube video URL or another http(s) URL is accepted. A YouTube
video becomes its canonical watch URL and its 11-character id; any other URL keeps its
text and gets an id from its file stem plus a hash. The id is made of [A-Za-z0-9_-]
only, so it is safe as a file name and a shard key, and the URL is the only thing from
the input that ever reaches yt-dlp.

A URL may carry credentials (``https://user:pass@host/...``, ``?token=...``): they are
used to download, and nowhere else. What is stored (manifest, samples) is
``VideoRef.shown_url``, with :func:`redact` applied; the id is derived from that too.

A ``captions`` sidecar is an http(s) URL, or a local path inside ``captions_root``
(``ingest.download.captions_root``; a relative path is taken under it). Without a
root, local paths are refused: an input list must not be able to read any file.

    make_ref("dQw4w9WgXcQ").url    # https://www.youtube.com/watch?v=dQw4w9WgXcQ
    make_ref("https://host/a b.mp4")   # ValueError: whitespace
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_YT_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_YT_HOSTS = {"youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com"}
_YT_PATH = re.compile(r"/(?:shorts|embed|live|v)/([A-Za-z0-9_-]{11})(?:[/?#]|$)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Query parameters whose values are credentials (signed URLs of S3, GCS, CDNs; API keys).
SECRET_PARAMS = re.compile(
    r"(?i)(?:[a-z0-9_.-]*(?:token|secret|password|passwd|signature|credential|api[_-]?key)"
    r"[a-z0-9_.-]*|key|sig|auth|authorization|x-amz-security-token)"
)
REDACTED = "REDACTED"
_USERINFO = re.compile(r"(?i)(?<=://)[^/?#@\s]*@")
_QUERY_PAIR = re.compile(r"(?<=[?&;])([^=&#\s;]+)=([^&#\s;]*)")


@dataclass(frozen=True, slots=True)
class VideoRef:
    video_id: str  # only [A-Za-z0-9_-]: safe as a file name and shard key
    url: str  # the only input that reaches yt-dlp
    captions: str | None = None  # VTT sidecar (http(s) URL or local path) for non-YouTube videos

    @property
    def shown_url(self) -> str:
        """The URL as stored in the manifest and samples: without credentials."""
        return redact(self.url)


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it removed: user:password@ dropped,
    the values of secret query parameters (token, key, signature, ...) replaced."""

    def pair(m: re.Match) -> str:
        name, value = m.groups()
        return f"{name}={REDACTED}" if value and SECRET_PARAMS.fullmatch(name) else m.group(0)

    return _QUERY_PAIR.sub(pair, _USERINFO.sub("", text))


def sidecar_path(captions: str, root: str | None) -> Path:
    """The local file a ``captions`` path names, resolved (links followed); ValueError
    unless it lies inside ``root``."""
    if root is None:
        raise ValueError(
            f"captions {captions!r} is a local path; local sidecars are read only from "
            "ingest.download.captions_root, which is not set"
        )
    base = Path(root).expanduser().resolve()
    path = (base / Path(captions).expanduser()).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"captions {captions!r} is outside ingest.download.captions_root")
    return path


def safe_id(raw: str) -> str:
    """`raw` if it is already made of [A-Za-z0-9_-] (<= 64 chars), else a safe, unique form."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", raw) and not raw.startswith("-"):
        return raw
    slug = _UNSAFE.sub("_", raw).strip("_-")[:48]
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    return f"{slug}_{digest}" if slug else f"id_{digest}"


def _youtube_id(parts) -> str | None:
    """The video id of a YouTube URL; "" for a YouTube URL that names no single video."""
    host = (parts.hostname or "").lower().removeprefix("www.")
    if host == "youtu.be":
        vid = parts.path.lstrip("/").split("/")[0]
    elif host in _YT_HOSTS and parts.path == "/watch":
        vid = (parse_qs(parts.query).get("v") or [""])[0]
    elif host in _YT_HOSTS:
        m = _YT_PATH.match(parts.path)
        vid = m.group(1) if m else ""
    else:
        return None
    return vid if _YT_ID.fullmatch(vid) else ""


def make_ref(
    raw: str,
    captions: str | None = None,
    video_id: str | None = None,
    captions_root: str | None = None,
) -> VideoRef:
    """Parse one input line into a VideoRef; ValueError for anything but an id or http(s)
    URL, or for a local ``captions`` path outside ``captions_root``."""
    text = raw.strip()
    if not text or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError(f"not a video id or URL: {raw!r}")
    # A bare YouTube id. One that starts with "-" must also end like a real id (the
    # 11th character encodes 4 bits), so option-like strings such as "--exec-rm" fail.
    if _YT_ID.fullmatch(text) and (not text.startswith("-") or text[-1] in "AEIMQUYcgkosw048"):
        url, derived = f"https://www.youtube.com/watch?v={text}", text
    else:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"only YouTube ids and http(s) URLs are accepted, got {raw!r}")
        yt = _youtube_id(parts)
        if yt:
            url, derived = f"https://www.youtube.com/watch?v={yt}", yt
        elif yt is not None:
            raise ValueError(f"not a single YouTube video: {raw!r}")
        else:
            stem = _UNSAFE.sub("_", Path(parts.path).stem).strip("_-")[:40] or "url"
            digest = hashlib.sha1(redact(text).encode()).hexdigest()[:12]
            url, derived = text, f"{stem}-{digest}"
    if captions is not None:
        scheme = urlsplit(captions).scheme.lower()
        if not captions.strip() or (scheme and scheme not in ("http", "https")):
            raise ValueError(f"captions must be an http(s) URL or a local path, got {captions!r}")
        if not scheme:
            captions = str(sidecar_path(captions, captions_root))
    vid = derived if video_id is None else safe_id(video_id)
    return VideoRef(video_id=vid, url=url, captions=captions)
