"""A proxy pool: each group of videos bound to one proxy, dead ones rotated out for a while.

The pool is ``ingest.download.proxies`` (a list), or the lines of ``proxies_file``, or
the single ``proxy`` (a pool of one). A group is bound to a proxy by rendezvous hashing
(the live proxy with the highest hash of group and proxy), so every worker binds a group
to the same proxy without talking to the others, and when a proxy is rotated out only
its groups move. A proxy that fails ``fail_after`` attempts in a row with a transient
failure (refused, reset, 5xx, 429: the proxy is dead or its IP is throttled) is out of
this worker's pool for ``cooldown_s``; when every proxy is out, the one back soonest is
used. Each worker keeps its own view: pools share no memory across processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from urllib.parse import urlsplit

from ingest.config import ConfigError, DownloadConfig
from ingest.refs import redact

SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def check_proxy(url: str, where: str) -> str:
    """``url`` if it is a proxy URL yt-dlp takes (scheme://host:port); else ConfigError."""
    url = url.strip()
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname or port is None:
        shown = redact(url)
        raise ConfigError(f"{where}: {shown!r} is not a proxy URL such as socks5://host:1080")
    return url


def read_proxies_file(path: str) -> tuple[str, ...]:
    """The proxy URLs of a file, one a line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ingest.download.proxies_file: {path}: {exc.strerror or exc}") from None
    urls = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            urls.append(check_proxy(line, f"{path}:{n}"))
    if not urls:
        raise ConfigError(f"ingest.download.proxies_file: {path} lists no proxies")
    return tuple(urls)


def proxy_list(cfg: DownloadConfig) -> tuple[str, ...]:
    """The pool of ``cfg``, checked (empty: no proxy)."""
    if cfg.proxies_file:
        return read_proxies_file(cfg.proxies_file)
    urls = cfg.proxies or ((cfg.proxy,) if cfg.proxy else ())
    return tuple(check_proxy(u, "ingest.download.proxies") for u in urls)


def for_run(cfg: DownloadConfig) -> DownloadConfig:
    """``cfg`` with a ``proxies_file`` read into ``proxies``: workers on other machines
    get the list, not a path they may not have."""
    if not cfg.proxies_file:
        proxy_list(cfg)  # checked now, with a one-line error, rather than on the workers
        return cfg
    return dataclasses.replace(cfg, proxies=read_proxies_file(cfg.proxies_file), proxies_file=None)


def _weight(key: str, proxy: str) -> bytes:
    return hashlib.sha256(f"{key}\0{proxy}".encode()).digest()


class ProxyPool:
    """One worker's view of the pool (not shared across processes)."""

    def __init__(self, urls: tuple[str, ...], fail_after: int, cooldown_s: float) -> None:
        if not urls:
            raise ValueError("a proxy pool needs at least one proxy")
        self.urls = urls
        self.fail_after, self.cooldown_s = fail_after, cooldown_s
        self.rotations = 0  # how many times a proxy was rotated out
        self._strikes = dict.fromkeys(urls, 0)
        self._out_until: dict[str, float] = {}

    def live(self) -> list[str]:
        now = time.monotonic()
        for url, until in list(self._out_until.items()):
            if until <= now:
                del self._out_until[url]
                self._strikes[url] = 0
        return [u for u in self.urls if u not in self._out_until]

    def choose(self, key: str) -> str:
        """The proxy for group ``key``: its highest-weighted live one."""
        live = self.live()
        if not live:  # all out: the one back soonest
            return min(self._out_until, key=lambda u: self._out_until[u])
        return max(live, key=lambda u: _weight(key, u))

    def record(self, url: str, failed: bool) -> bool:
        """An attempt's outcome through ``url``; True when that rotated it out."""
        if not failed:
            self._strikes[url] = 0
            return False
        self._strikes[url] += 1
        if self._strikes[url] < self.fail_after or url in self._out_until:
            return False
        self._out_until[url] = time.monotonic() + self.cooldown_s
        self.rotations += 1
        return True
