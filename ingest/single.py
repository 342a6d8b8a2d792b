"""One video, outside Beam: the samples ingest makes of a local file or a URL, with the
long-video filters off and captions optional (what `model.inference.encode_video` and
other single-video tools need). Failures raise ValueError with one line."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from ingest import config as ingest_config
from ingest.core import VideoFailure, VideoSource, process_video
from ingest.download import Downloader
from ingest.refs import make_ref
from shards import schema


def samples_of(path_or_url: str, captions: str | None = None) -> list[schema.Sample]:
    """The samples ingest makes of one video (filters off, captions optional)."""
    settings = ingest_config.load().ingest
    core = dataclasses.replace(
        settings.core,
        filters=ingest_config.FilterConfig(
            max_duration_s=None, min_words_per_window=None, require_captions=False
        ),
        segments=dataclasses.replace(settings.core.segments, min_segments=1),
    )
    local = Path(path_or_url)
    try:
        if "://" not in path_or_url and local.exists():
            source = VideoSource(local.stem, url=local.resolve().as_uri(), title=local.stem)
            cap = Path(captions) if captions else None
            return process_video(local, cap, core, source).samples
        ref = make_ref(path_or_url, captions=captions)
        with tempfile.TemporaryDirectory(prefix="montage-encode-") as tmp:
            downloader = Downloader(settings.download, Path(tmp))
            try:
                with downloader.session(ref) as got:
                    title = str(got.info.get("title") or "")
                    source = VideoSource(ref.video_id, ref.shown_url, title, got.caption_kind)
                    return process_video(got.video_path, got.captions_path, core, source).samples
            finally:
                downloader.close()
    except VideoFailure as exc:
        raise ValueError(f"{path_or_url}: {exc}") from None
