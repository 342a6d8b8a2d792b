"""ingest.proxies: the pool, its hash binding and rotation, through a real proxy on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.localserve import LocalServer
from devtools.mediagen import make_video, make_words, write_auto_vtt
from ingest import __main__ as cli
from ingest import proxies
from ingest.config import ConfigError, DownloadConfig
from ingest.download import Downloader
from ingest.proxies import ProxyPool
from ingest.refs import make_ref
from tests.helpers import free_port, http_proxy

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "socket_timeout_s": 5.0}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_video(root / "clip.mp4", 2.0, width=160, height=120, fps=5)
    write_auto_vtt(root / "clip.en.vtt", make_words(2.0))
    return root


@pytest.fixture(scope="module")
def live_proxy(tmp_path_factory):
    with http_proxy(tmp_path_factory.mktemp("proxy")) as (url, log):
        yield url, log


def _fetched(log: Path, server: LocalServer, name: str) -> int:
    """How many requests of `name` on `server` the proxy's access log shows."""
    host = server.base_url.removeprefix("http://")
    return sum(f"{host}/{name}" in line for line in log.read_text().splitlines())


def _download(dl: Downloader, server: LocalServer, name: str) -> None:
    ref = make_ref(server.url(f"{name}.mp4"), server.url("clip.en.vtt"))
    with dl.session(ref) as got:
        assert got.video_path.stat().st_size > 0


def test_a_group_keeps_its_proxy_and_a_dead_proxy_is_rotated_out(site, live_proxy, tmp_path):
    live, log = live_proxy
    dead = f"http://127.0.0.1:{free_port()}"  # a proxy that is no longer there
    (site / "a.mp4").write_bytes((site / "clip.mp4").read_bytes())
    (site / "b.mp4").write_bytes((site / "clip.mp4").read_bytes())
    cfg = DownloadConfig(proxies=(dead, live), proxy_fail_after=1, retries=2, **FAST)
    dl = Downloader(cfg, tmp_path / "work")
    pool = dl.gate.pool
    keys = [f"group-{i}" for i in range(64)]
    to_live = next(k for k in keys if pool.choose(k) == live)
    to_dead = next(k for k in keys if pool.choose(k) == dead)
    with LocalServer(site) as srv:
        dl.gate.start_group(to_live)
        _download(dl, srv, "a")
        assert dl.gate.stats["proxy_rotations"] == 0
        dl.gate.start_group(to_dead)  # its first attempt is refused: the retry goes live
        _download(dl, srv, "b")
        dl.close()
        assert dl.gate.stats["proxy_rotations"] == 1
        assert pool.live() == [live] and pool.choose(to_dead) == live
        # every request the site answered came through the live proxy
        for name in ("a.mp4", "b.mp4", "clip.en.vtt"):
            assert srv.requests(name) >= 1
            assert _fetched(log, srv, name) == srv.requests(name), name


def test_the_single_proxy_setting_is_a_pool_of_one(site, live_proxy, tmp_path):
    live, log = live_proxy
    (site / "c.mp4").write_bytes((site / "clip.mp4").read_bytes())
    dl = Downloader(DownloadConfig(proxy=live, **FAST), tmp_path / "work")
    assert dl.gate.pool.urls == (live,)
    with LocalServer(site) as srv:
        _download(dl, srv, "c")
        dl.close()
        assert srv.requests("c.mp4") >= 1 and _fetched(log, srv, "c.mp4") == srv.requests("c.mp4")


def test_binding_is_stable_and_only_the_groups_of_a_rotated_proxy_move():
    urls = tuple(f"http://127.0.0.1:{8000 + i}" for i in range(4))
    pool = ProxyPool(urls, fail_after=2, cooldown_s=60.0)
    keys = [f"g{i}" for i in range(200)]
    before = {k: pool.choose(k) for k in keys}
    assert before == {k: ProxyPool(urls, 2, 60.0).choose(k) for k in keys}  # any worker agrees
    assert len(set(before.values())) == 4  # spread over all of them
    assert not pool.record(urls[0], failed=True)  # one strike of two
    assert pool.record(urls[0], failed=True)
    after = {k: pool.choose(k) for k in keys}
    moved = {k for k in keys if after[k] != before[k]}
    assert moved == {k for k in keys if before[k] == urls[0]}
    assert urls[0] not in after.values()


def test_a_proxy_comes_back_after_its_cooldown_and_success_clears_strikes():
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    pool = ProxyPool((a, b), fail_after=2, cooldown_s=0.0)
    pool.record(a, failed=True)
    pool.record(a, failed=False)  # strikes are in a row
    assert not pool.record(a, failed=True)
    assert pool.record(a, failed=True) and pool.rotations == 1
    assert pool.live() == [a, b]  # a zero cooldown is over at once


def test_when_every_proxy_is_out_the_one_back_soonest_is_used():
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    pool = ProxyPool((a, b), fail_after=1, cooldown_s=60.0)
    pool.record(b, failed=True)
    pool.record(a, failed=True)
    assert pool.live() == [] and pool.choose("any") == b


def test_a_proxies_file_is_read_once_for_the_run(tmp_path):
    path = tmp_path / "proxies.txt"
    path.write_text("# our pool\nhttp://127.0.0.1:3128\n\nsocks5://user:pw@10.0.0.2:1080  # dc2\n")
    cfg = proxies.for_run(DownloadConfig(proxies_file=str(path)))
    assert cfg.proxies == ("http://127.0.0.1:3128", "socks5://user:pw@10.0.0.2:1080")
    assert cfg.proxies_file is None


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"proxies": ("127.0.0.1:3128",)}, "is not a proxy URL"),
        ({"proxies": ("ftp://127.0.0.1:21",)}, "is not a proxy URL"),
        ({"proxies": ("http://127.0.0.1",)}, "is not a proxy URL"),  # no port
        ({"proxies_file": "/nonexistent/proxies.txt"}, "No such file"),
    ],
)
def test_bad_proxies_are_one_line_errors(cfg, message):
    with pytest.raises(ConfigError, match=message) as err:
        proxies.for_run(DownloadConfig(**cfg))
    assert "\n" not in str(err.value)


def test_credentials_of_a_bad_proxy_are_not_shown(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="lists no proxies"):
        proxies.for_run(DownloadConfig(proxies_file=str(path)))
    with pytest.raises(ConfigError) as err:
        proxies.for_run(DownloadConfig(proxies=("gopher://user:secret@host:70",)))
    assert "secret" not in str(err.value)


def test_one_of_proxy_proxies_and_proxies_file():
    with pytest.raises(ValueError, match="proxies cannot be set with proxy or proxies_file"):
        DownloadConfig(proxy="http://127.0.0.1:1", proxies=("http://127.0.0.1:2",))


def test_a_missing_proxies_file_stops_the_command_in_one_line(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("dQw4w9WgXcQ\n")
    missing = tmp_path / "nowhere" / "proxies.txt"
    args = ["--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out")]
    rc = cli.main(["run", *args, "--set", f"ingest.download.proxies_file={missing}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ingest.download.proxies_file:") and str(missing) in err[0]
    assert not (tmp_path / "out").exists()
