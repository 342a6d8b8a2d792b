"""ingest.download.ytdlp: yt-dlp options as configuration, checked, merged into the
YoutubeDL parameters, and the ones that would break Montage refused by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
import yt_dlp
from yt_dlp.networking.impersonate import ImpersonateTarget

from ingest import config, ytdlp_options
from ingest.download import ytdlp_params

REPO = Path(__file__).resolve().parents[2]


def load(*overrides: str) -> config.DownloadConfig:
    return config.load(None, list(overrides)).ingest.download


@pytest.mark.parametrize(
    "option",
    [
        "outtmpl",
        "paths",
        "postprocessors",
        "exec_cmd",
        "external_downloader",
        "netrc_cmd",
        "ffmpeg_location",
        "format",
        "writesubtitles",
        "proxy",
        "cookiefile",
    ],
)
def test_an_option_that_would_break_montage_is_refused_by_name(option):
    with pytest.raises(config.ConfigError, match=rf"ytdlp\.{option}: refused: \w"):
        load(f"ingest.download.ytdlp.{option}=x")


def test_every_refused_option_has_a_reason_and_none_is_also_allowed():
    assert ytdlp_options.REFUSED and all(ytdlp_options.REFUSED.values())
    assert not set(ytdlp_options.REFUSED) & set(ytdlp_options.ALLOWED)


def test_an_unknown_option_is_refused_with_the_allowed_names():
    with pytest.raises(config.ConfigError, match=r"ytdlp\.no_such_thing: .*extractor_args"):
        load("ingest.download.ytdlp.no_such_thing=1")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("extractor_args={youtube: {player_client: 3}}", "extractor_args.youtube.player_client"),
        ("extractor_args={youtube: web}", "extractor_args.youtube"),
        ("js_runtimes={rhino: {}}", "js_runtimes.rhino"),
        ("js_runtimes={deno: {exe: /x}}", "js_runtimes.deno"),
        ("remote_components=[ejs:elsewhere]", "remote_components"),
        ("impersonate='chrome:win:10:x'", "impersonate"),
        ("sleep_interval_requests=-1", "sleep_interval_requests"),
        ("geo_bypass_country=USA", "geo_bypass_country"),
        ("http_headers={Accept: 1}", "http_headers"),
        ("plugin_dirs=[3]", "plugin_dirs"),
        ("max_sleep_interval=5", "max_sleep_interval"),  # needs sleep_interval_s
    ],
)
def test_a_bad_value_names_its_option(override, key):
    with pytest.raises(config.ConfigError, match=rf"ingest\.download: ytdlp\.{key}\b"):
        load(f"ingest.download.ytdlp.{override}")


def test_an_option_set_beside_ytdlp_says_where_it_belongs():
    with pytest.raises(config.ConfigError, match=r"ingest\.download\.ytdlp\.extractor_args"):
        load("ingest.download.extractor_args={youtube: {player_client: [web]}}")


def test_options_from_the_file_and_from_set_reach_a_real_youtubedl(tmp_path):
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["ingest"]["download"]["ytdlp"] = {
        "extractor_args": {"youtube": {"player_client": "default,mweb", "po_token": ["web.gvs+T"]}},
        "js_runtimes": {"deno": None},
        "sleep_interval_subtitles": 2,
    }
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config.load(
        path,
        [
            "ingest.download.ytdlp.impersonate=chrome",
            "ingest.download.ytdlp.remote_components=[ejs:npm]",
            "ingest.download.ytdlp.extractor_args.youtubepot-example.base_url=http://127.0.0.1:1",
        ],
    ).ingest.download
    params = ytdlp_params(cfg)
    youtube = params["extractor_args"]["youtube"]
    assert youtube["skip"] == ["translated_subs"], "Montage's own extractor args stay"
    assert youtube["player_client"] == ["default,mweb"] and youtube["po_token"] == ["web.gvs+T"]
    assert params["extractor_args"]["youtubepot-example"] == {"base_url": ["http://127.0.0.1:1"]}
    assert params["impersonate"] == ImpersonateTarget("chrome")
    assert params["outtmpl"] == {"default": "media.%(ext)s"}
    with yt_dlp.YoutubeDL(params | {"logger": None, "quiet": True}) as ydl:
        assert ydl.params["js_runtimes"] == {"deno": {}}
        assert ydl.params["remote_components"] == {"ejs:npm"}
        assert ydl.params["sleep_interval_subtitles"] == 2.0
        ie = ydl.get_info_extractor("Youtube")
        assert ie._configuration_arg("player_client") == ["default,mweb"]


def test_the_shipped_default_adds_nothing_to_montages_parameters():
    cfg = load()
    assert cfg.ytdlp == {}
    params = ytdlp_params(cfg)
    assert not {"js_runtimes", "impersonate", "remote_components"} & set(params)
    plain = {k: v for k, v in params.items() if k != "logger"}
    assert ytdlp_options.merge(plain, {}) == plain
    assert ytdlp_options.merge(plain, {"impersonate": "chrome"}) != plain


def test_a_plugin_folder_is_searched_by_yt_dlp(tmp_path):
    """yt-dlp's plugin mechanism (how a PO-token provider is installed) with a folder
    named in the configuration: its extractor plugin is loaded by the YoutubeDL."""
    package = tmp_path / "plugins" / "montage-probe" / "yt_dlp_plugins" / "extractor"
    package.mkdir(parents=True)
    (package / "montage_probe.py").write_text(
        textwrap.dedent(
            """
            from yt_dlp.extractor.common import InfoExtractor

            class MontageProbeIE(InfoExtractor):
                _VALID_URL = r'montage-probe:(?P<id>.+)'
            """
        )
    )
    script = textwrap.dedent(
        f"""
        from ingest import config
        from ingest.download import ytdlp_params
        import yt_dlp
        cfg = config.load(None, ["ingest.download.ytdlp.plugin_dirs=[{tmp_path / "plugins"}]"])
        with yt_dlp.YoutubeDL(ytdlp_params(cfg.ingest.download)) as ydl:
            print("found" if ydl.get_info_extractor("MontageProbe") else "absent")
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "found"
