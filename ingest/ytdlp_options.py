"""yt-dlp options a user may add (``ingest.download.ytdlp`` in pipelines.yaml).

Montage builds yt-dlp's parameters itself (`ingest.download.ytdlp_params`): the
format, the caption track, the file names it reads back, its retries. This mapping
adds what a site asks for on top of that, in yt-dlp's own parameter names, e.g.::

    ytdlp:
      extractor_args:
        youtube: {player_client: [default, mweb]}
      js_runtimes: {deno: {path: /opt/deno/bin/deno}}
      impersonate: chrome
      sleep_interval_requests: 1.0

Each allowed option has a check (`ALLOWED`); an option that would break Montage
(output names, format and caption choice, post-processors, anything that runs a
command or code, or one Montage already sets from its own keys) is refused by name
with the reason (`REFUSED`), and any other name is refused as unknown.
:func:`check` returns the options in plain Python types, :func:`merge` lays them
over Montage's parameters. yt-dlp is imported only where its own lists are asked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

_OUTPUT = "Montage names the files it downloads and reads them back"
_CHOICE = "Montage chooses the media format and the caption track itself"
_RUNS = "it runs a command or code that pipelines.yaml should not start"
_OWN = "Montage sets it from ingest.download.{}"


def _each(reason: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), reason)


REFUSED: dict[str, str] = {
    **_each(
        _OUTPUT,
        "outtmpl paths outtmpl_na_placeholder restrictfilenames windowsfilenames "
        "trim_file_name final_ext merge_output_format keepvideo overwrites continuedl "
        "nopart writeinfojson writedescription writethumbnail write_all_thumbnails "
        "download_archive",
    ),
    **_each(
        _CHOICE,
        "format format_sort format_sort_force allow_unplayable_formats writesubtitles "
        "writeautomaticsub subtitleslangs subtitlesformat skip_download simulate "
        "noplaylist playlist_items listformats listsubtitles",
    ),
    **_each(
        _RUNS,
        "postprocessors postprocessor_args postprocessor_hooks progress_hooks "
        "external_downloader external_downloader_args exec_cmd netrc_cmd "
        "ffmpeg_location match_filter logger compat_opts",
    ),
    "proxy": _OWN.format("proxy"),
    "cookiefile": _OWN.format("cookies_file"),
    "socket_timeout": _OWN.format("socket_timeout_s"),
    "retries": _OWN.format("retries (Montage retries with backoff itself)"),
    "sleep_interval": _OWN.format("sleep_interval_s"),
}


class OptionError(ValueError):
    """One yt-dlp option is refused or has a bad value; the message starts with its name."""


def _fail(name: str, expected: str, value: Any) -> OptionError:
    return OptionError(f"ytdlp.{name}: expected {expected}, got {value!r}")


def _strings(name: str, value: Any) -> list[str]:
    """A string or a list of strings, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise _fail(name, "a string or a list of strings", value)
    return list(items)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise _fail(name, "a mapping with string keys", value)
    return value


def _extractor_args(name: str, value: Any) -> dict[str, dict[str, list[str]]]:
    """{extractor: {argument: [values]}}; a single string value becomes a list of one."""
    return {
        ie.lower(): {
            arg: _strings(f"{name}.{ie}.{arg}", v)
            for arg, v in _mapping(f"{name}.{ie}", args).items()
        }
        for ie, args in _mapping(name, value).items()
    }


def _js_runtimes(name: str, value: Any) -> dict[str, dict[str, str]]:
    """{runtime: {path: executable or folder}} or {runtime: null}, runtimes yt-dlp knows."""
    import yt_dlp  # noqa: F401  (registers the runtimes)
    from yt_dlp.globals import supported_js_runtimes

    known = sorted(supported_js_runtimes.value)
    out: dict[str, dict[str, str]] = {}
    for runtime, conf in _mapping(name, value).items():
        if runtime not in known:
            raise OptionError(f"ytdlp.{name}.{runtime}: not a runtime yt-dlp knows ({known})")
        conf = {} if conf is None else _mapping(f"{name}.{runtime}", conf)
        if set(conf) - {"path"} or not all(isinstance(v, str) and v for v in conf.values()):
            raise _fail(f"{name}.{runtime}", "null or {path: PATH}", conf)
        out[runtime] = dict(conf)
    return out


def _remote_components(name: str, value: Any) -> list[str]:
    import yt_dlp  # noqa: F401  (registers the components)
    from yt_dlp.globals import supported_remote_components

    known = list(supported_remote_components.value)
    items = _strings(name, value)
    if bad := [x for x in items if x not in known]:
        raise OptionError(f"ytdlp.{name}: {bad} are not components yt-dlp knows ({known})")
    return items


def _impersonate(name: str, value: Any) -> str:
    """A target as yt-dlp writes it: CLIENT[-VERSION][:OS[-OS_VERSION]], e.g. chrome."""
    from yt_dlp.networking.impersonate import ImpersonateTarget

    if not isinstance(value, str) or not value:
        raise _fail(name, "a target such as chrome or safari-18.0:ios", value)
    try:
        ImpersonateTarget.from_str(value)
    except ValueError:
        raise _fail(name, "a target such as chrome or safari-18.0:ios", value) from None
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _fail(name, "a number of seconds >= 0", value)
    return float(value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(name, "a non-empty string", value)
    return value


def _country(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) != 2 or not value.isalpha():
        raise _fail(name, "a two-letter country code", value)
    return value.upper()


def _headers(name: str, value: Any) -> dict[str, str]:
    headers = _mapping(name, value)
    if not all(isinstance(v, str) for v in headers.values()):
        raise _fail(name, "a mapping of header names to strings", value)
    return dict(headers)


def _cachedir(name: str, value: Any) -> str | bool:
    if value is False:
        return False
    return _text(name, value)


def _plugin_dirs(name: str, value: Any) -> list[str]:
    """Folders yt-dlp searches for plugins, besides its default ones (as --plugin-dirs)."""
    return _strings(name, value)


def use_plugin_dirs(dirs: list[str]) -> None:
    """Make yt-dlp search ``dirs`` besides its default plugin folders, and load their
    plugins now when this process has loaded plugins already."""
    from yt_dlp.globals import all_plugins_loaded, plugin_dirs
    from yt_dlp.plugins import load_all_plugins

    wanted = list(dict.fromkeys(["default", *dirs]))
    if plugin_dirs.value != wanted:
        plugin_dirs.value = wanted
        if all_plugins_loaded.value:
            load_all_plugins()


ALLOWED: dict[str, Callable[[str, Any], Any]] = {
    "extractor_args": _extractor_args,
    "js_runtimes": _js_runtimes,
    "remote_components": _remote_components,
    "impersonate": _impersonate,
    "sleep_interval_requests": _seconds,
    "sleep_interval_subtitles": _seconds,
    "max_sleep_interval": _seconds,
    "source_address": _text,
    "geo_bypass_country": _country,
    "http_headers": _headers,
    "cachedir": _cachedir,
    "plugin_dirs": _plugin_dirs,
}


def check(options: Any) -> dict[str, Any]:
    """The validated options (plain dicts, lists, strings and numbers); OptionError
    names the first one that is refused, unknown or malformed."""
    if not isinstance(options, dict):
        raise OptionError(f"ytdlp: expected a mapping of yt-dlp options, got {options!r}")
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name in REFUSED:
            raise OptionError(f"ytdlp.{name}: refused: {REFUSED[name]}")
        if name not in ALLOWED:
            raise OptionError(
                f"ytdlp.{name}: not a yt-dlp option Montage passes on; allowed: {sorted(ALLOWED)}"
            )
        out[name] = ALLOWED[name](name, value)
    return out


def merge(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Montage's YoutubeDL ``params`` with the user's checked ``options`` laid over them
    (a copy). ``extractor_args`` merge per extractor; ``impersonate`` becomes yt-dlp's
    target object; ``plugin_dirs`` is process-wide in yt-dlp and is set there, before
    the first YoutubeDL of the process loads its plugins."""
    out = dict(params)
    options = copy.deepcopy(options)
    for ie, args in options.pop("extractor_args", {}).items():
        merged = dict(out.get("extractor_args", {}))
        merged[ie] = {**merged.get(ie, {}), **args}
        out["extractor_args"] = merged
    if "impersonate" in options:
        from yt_dlp.networking.impersonate import ImpersonateTarget

        out["impersonate"] = ImpersonateTarget.from_str(options.pop("impersonate"))
    if "remote_components" in options:
        out["remote_components"] = set(options.pop("remote_components"))
    if "plugin_dirs" in options:
        use_plugin_dirs(options.pop("plugin_dirs"))
    out.update(options)
    return out
