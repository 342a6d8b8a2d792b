"""What a run needs, checked before it starts: `python -m ingest doctor` and `ingest run`.

Each check returns a `Check`: a name, a status, what was found and, when it is not
``ok``, the fix. Statuses: ``ok``; ``warn`` (works, but worth acting on); ``missing``
(a run that needs it cannot work); ``optional`` (missing, and not needed by this run).

The yt-dlp checks ask yt-dlp itself, through a YoutubeDL built from Montage's own
parameters (`ingest.download.ytdlp_params`, the user's ``ingest.download.ytdlp``
included): the JavaScript runtimes it would use and whether it accepts their
version, the challenge-solver scripts it would load for them (without fetching
anything from the network), the impersonation targets its request handlers offer,
the PO-token providers it loaded. Some of these are internals of the pinned yt-dlp
(``_js_runtimes``, the solver providers' ``_get_script``,
``_get_available_impersonate_targets``, the provider registries): the tests in
tests/ingest/test_doctor.py fail when an upgrade moves them. Everything else is local: the ffmpeg tools, the cookies file, a TCP connect
to each proxy, fsspec's filesystem for each URL scheme, the Beam runner's modules.
"""

from __future__ import annotations

import contextlib
import datetime
import http.cookiejar
import importlib
import io
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ingest.config import ConfigError, DownloadConfig
from ingest.proxies import proxy_list
from ingest.refs import make_ref, redact

STATUSES = ("ok", "warn", "missing", "optional")
YTDLP_MAX_AGE_DAYS = 90  # YouTube changes often; an older yt-dlp is worth updating
# fsspec URL schemes whose filesystem is an extra of Montage
SCHEME_EXTRAS = {"gs": "gcp", "gcs": "gcp", "s3": "aws", "s3a": "aws"}
# runners whose client libraries are an extra, and a module that needs them
RUNNER_EXTRAS = {"DataflowRunner": ("gcp", "apache_beam.runners.dataflow.internal.apiclient")}
PROXY_TIMEOUT_S = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080}
_DEFAULT_PORTS |= {"socks5h": 1080}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status

    @property
    def failed(self) -> bool:
        return self.status == "missing"

    def line(self) -> str:
        """One line: the error `ingest run` prints for a failed check."""
        return f"{self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


def _extra(name: str) -> str:
    return f"pip install 'montage[{name}]'"


# --- tools and yt-dlp -------------------------------------------------------------------


def check_tool(name: str) -> Check:
    """An ffmpeg tool on PATH that runs and says its version."""
    path = shutil.which(name)
    fix = "install ffmpeg (apt-get install ffmpeg; `make setup` does it)"
    if path is None:
        return Check(name, "missing", "not found on PATH", fix)
    try:
        done = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, "missing", f"{path} does not run: {exc}", fix)
    first = (done.stdout.splitlines() or [""])[0]
    if done.returncode != 0 or not first:
        return Check(name, "missing", f"{path} -version exited {done.returncode}", fix)
    return Check(name, "ok", f"{' '.join(first.split()[:3])} ({path})")


def check_ytdlp_version(today: datetime.date | None = None) -> Check:
    """yt-dlp's version and how old its release is (its versions are dates)."""
    from yt_dlp.version import __version__

    today = today or datetime.date.today()
    try:
        released = datetime.date(*(int(x) for x in __version__.split(".")[:3]))
    except (TypeError, ValueError):
        return Check("yt-dlp", "warn", f"{__version__}: its age cannot be told")
    age = (today - released).days
    detail = f"{__version__} ({age} days old)"
    if age > YTDLP_MAX_AGE_DAYS:
        fix = "raise the yt-dlp pin in pyproject.toml to a current release and run `make setup`"
        return Check("yt-dlp", "warn", detail + "; YouTube changes often", fix)
    return Check("yt-dlp", "ok", detail)


class _Collect:
    """A yt-dlp logger that keeps its warnings and errors for the report."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.messages.append(msg)

    def error(self, msg: str) -> None:
        self.messages.append(msg)


def _open_ytdlp(params: dict[str, Any]) -> tuple[Any, Check | None]:
    """A YoutubeDL with these parameters; when yt-dlp refuses the impersonate target
    (none of its handlers offers it), one without it and the check that says so."""
    import yt_dlp
    from yt_dlp.utils import YoutubeDLError

    try:
        return yt_dlp.YoutubeDL(params), None
    except YoutubeDLError as exc:
        target = params.pop("impersonate", None)
        if target is None:
            raise
        fix = "install curl_cffi (montage pins it; `make setup`), or choose another target"
        refused = Check("impersonation", "missing", f"ytdlp.impersonate {target}: {exc}", fix)
        return yt_dlp.YoutubeDL(params), refused


def check_ytdlp(cfg: DownloadConfig) -> list[Check]:
    """JavaScript runtime, challenge solver and impersonation, as yt-dlp sees them with
    this configuration."""
    from ingest.download import ytdlp_params

    log = _Collect()
    params = ytdlp_params(cfg) | {"logger": log, "quiet": True}
    params.pop("cookiefile", None)  # checked apart: a YoutubeDL writes its cookies file on close
    # the solver check fetches nothing: what ejs:github would bring is reported, not fetched
    remote = set(params.get("remote_components") or ())
    params["remote_components"] = remote - {"ejs:github"}
    ydl, refused = _open_ytdlp(params)
    try:
        runtimes = _check_runtimes(ydl)
        solver = _check_solver(ydl, runtimes, "ejs:github" in remote, log)
        return [runtimes, solver, refused or _check_impersonation(ydl), _check_po_token(ydl)]
    finally:
        ydl.close()


def _check_runtimes(ydl: Any) -> Check:
    from yt_dlp.globals import supported_js_runtimes

    fix = (
        "install deno (montage pins it; `make setup`), or set "
        "ingest.download.ytdlp.js_runtimes to a runtime yt-dlp accepts (deno >= 2.3, node >= 22)"
    )
    if not ydl.params.get("js_runtimes"):
        return Check("js runtime", "missing", "none enabled (ytdlp.js_runtimes is empty)", fix)
    found, problems = [], []
    for name, runtime in ydl._js_runtimes.items():
        info = runtime.info if runtime is not None else None
        if info is None:
            where = ydl.params["js_runtimes"][name].get("path") or f"{name} on PATH"
            problems.append(f"{name}: not found ({where})")
        elif not info.supported:
            least = getattr(supported_js_runtimes.value[name], "MIN_SUPPORTED_VERSION", ())
            need = ".".join(map(str, least)) or "a newer one"
            problems.append(f"{info.name} {info.version}: yt-dlp needs {need} or newer")
        else:
            found.append(f"{info.name} {info.version} ({info.path})")
    if found:
        return Check("js runtime", "ok", "; ".join(found + problems))
    return Check("js runtime", "missing", "; ".join(problems), fix)


def _check_solver(ydl: Any, runtimes: Check, from_github: bool, log: _Collect) -> Check:
    """The challenge-solver scripts yt-dlp would load for an available runtime."""
    from yt_dlp.extractor.youtube.jsc._builtin.ejs import EJSBaseJCP, ScriptType
    from yt_dlp.extractor.youtube.jsc._director import initialize_jsc_director
    from yt_dlp.extractor.youtube.jsc.provider import JsChallengeProviderRejectedRequest

    fix = (
        "install yt-dlp-ejs at the version yt-dlp expects (montage pins it; `make setup`), "
        "or allow ingest.download.ytdlp.remote_components: [ejs:github]"
    )
    if runtimes.failed:
        return Check(
            "challenge solver", "missing", "no JavaScript runtime to run it", "see js runtime"
        )
    director = initialize_jsc_director(ydl.get_info_extractor("Youtube"))
    problems = []
    for provider in director.providers.values():
        if not provider.is_available():
            continue
        if not isinstance(provider, EJSBaseJCP):  # a plugin's solver
            return Check("challenge solver", "ok", f"provider {provider.PROVIDER_NAME}")
        try:
            scripts = [provider._get_script(t) for t in (ScriptType.CORE, ScriptType.LIB)]
        except JsChallengeProviderRejectedRequest as exc:
            problems.append(f"{provider.PROVIDER_NAME}: {exc}")
            continue
        sources = sorted({f"{s.source.value}" for s in scripts})
        return Check(
            "challenge solver",
            "ok",
            f"yt-dlp-ejs {scripts[0].version} for {provider.JS_RUNTIME_NAME} "
            f"({', '.join(sources)})",
        )
    if from_github:
        return Check("challenge solver", "warn", "fetched from GitHub at run time (ejs:github)")
    said = [m for m in log.messages if "solver" in m.lower()]
    return Check("challenge solver", "missing", "; ".join(problems + said[-1:]) or "none", fix)


def _check_impersonation(ydl: Any) -> Check:
    targets = ydl._get_available_impersonate_targets()
    if not targets:
        return Check(
            "impersonation",
            "missing",
            "no impersonate target (YouTube caption requests then meet HTTP 429)",
            "install curl_cffi (montage pins it; `make setup`)",
        )
    handlers = sorted({rh for _, rh in targets})
    clients = sorted({t.client for t, _ in targets if t.client})
    return Check(
        "impersonation",
        "ok",
        f"{len(targets)} targets ({', '.join(clients)}) by {', '.join(handlers)}",
    )


def _check_po_token(ydl: Any) -> Check:
    """PO-token provider plugins yt-dlp loaded, and tokens given outright (optional both)."""
    from yt_dlp.extractor.youtube.pot._registry import _pot_providers

    providers = sorted(p.PROVIDER_NAME for p in _pot_providers.value.values())
    given = (ydl.params.get("extractor_args") or {}).get("youtube", {}).get("po_token")
    found = [f"provider {', '.join(providers)}"] if providers else []
    found += [f"{len(given)} given in extractor_args.youtube.po_token"] if given else []
    if found:
        return Check("po token", "ok", "; ".join(found))
    fix = "only when YouTube asks for one: README, A PO-token provider"
    return Check("po token", "optional", "no provider plugin, no token given", fix)


# --- cookies, proxies, filesystems, runners ---------------------------------------------


def check_cookies(path: str | None) -> Check:
    from yt_dlp.cookies import YoutubeDLCookieJar

    if path is None:
        return Check("cookies", "ok", "none set (public videos only)")
    fix = "export a Netscape cookies.txt and set ingest.download.cookies_file to it"
    jar = YoutubeDLCookieJar(path)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its notes on each odd line
            jar.load()
    except http.cookiejar.LoadError:
        return Check("cookies", "missing", f"{path}: not a Netscape cookies.txt", fix)
    except (OSError, UnicodeDecodeError) as exc:
        return Check("cookies", "missing", f"{path}: {getattr(exc, 'strerror', '') or exc}", fix)
    return Check("cookies", "ok", f"{path}: {len(jar)} cookies")


def proxy_checks(cfg: DownloadConfig) -> list[Check]:
    """One line per proxy of the pool (``proxy``, ``proxies`` or ``proxies_file``). The pool
    rotates a dead proxy out, so a dead one is a warning while another one answers."""
    try:
        urls = proxy_list(cfg)
    except ConfigError as exc:
        return [Check("proxy", "missing", str(exc), "correct the proxy settings")]
    checks = [check_proxy(u) for u in urls]
    if len(checks) > 1 and not all(c.failed for c in checks):
        fix = "the pool rotates it out; start it or remove it from the pool"
        checks = [Check(c.name, "warn", c.detail, fix) if c.failed else c for c in checks]
    return checks


def check_proxy(url: str, timeout_s: float = PROXY_TIMEOUT_S) -> Check:
    """A TCP connection to the proxy's host and port (the proxy's protocol is not spoken)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    shown = redact(url)
    fix = "start the proxy, or correct or remove ingest.download.proxy"
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return Check("proxy", "missing", f"{shown}: not a proxy URL (scheme://host:port)", fix)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return Check("proxy", "missing", f"{shown}: cannot connect: {exc.strerror or exc}", fix)
    return Check("proxy", "ok", f"{shown} accepts connections")


def check_plugin_dirs(dirs: Iterable[str]) -> Check:
    """The folders of ``ytdlp.plugin_dirs`` (yt-dlp stops at one that is not a folder)."""
    dirs = list(dirs)
    fix = "create the folder, or correct ingest.download.ytdlp.plugin_dirs"
    if absent := [d for d in dirs if not os.path.isdir(d)]:
        return Check("plugin dirs", "missing", f"not folders: {', '.join(absent)}", fix)
    return Check("plugin dirs", "ok", ", ".join(dirs))


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower() if "://" in url else "file"


def check_filesystem(scheme: str, needed: bool = True) -> Check:
    """fsspec's filesystem for a URL scheme; ``needed``: whether the run uses it."""
    import fsspec

    name = f"{scheme}://"
    if scheme in ("file", "local"):
        return Check(name, "ok", "local files")
    extra = SCHEME_EXTRAS.get(scheme)
    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ImportError:
        fix = _extra(extra) if extra else f"install the fsspec implementation of {name}"
        return Check(name, "missing" if needed else "optional", "its filesystem is missing", fix)
    except ValueError:
        return Check(name, "missing", "not a URL scheme fsspec knows", "use a local path")
    return Check(name, "ok", f"{cls.__module__.split('.')[0]}")


def check_runner(runner: str | None) -> Check:
    name = f"runner {runner}"
    if runner not in RUNNER_EXTRAS:
        return Check(name, "ok", "part of apache-beam")
    extra, module = RUNNER_EXTRAS[runner]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return Check(name, "missing", f"cannot load its client: {exc}", _extra(extra))
    return Check(name, "ok", f"apache-beam[{extra}]")


# --- what a run needs --------------------------------------------------------------------


def is_youtube(url: str) -> bool:
    """Whether an input line names a YouTube video (an id, or a YouTube video URL)."""
    try:
        return make_ref(url).url.startswith("https://www.youtube.com/watch?v=")
    except ValueError:
        return False


def launch_checks(runner: str | None, urls: Iterable[str]) -> list[Check]:
    """What the launching machine itself needs: the runner's client and the filesystems
    of the input and output URLs."""
    schemes = dict.fromkeys(scheme_of(u) for u in urls)
    return [check_runner(runner), *(check_filesystem(s) for s in schemes)]


def download_checks(cfg: DownloadConfig, youtube: bool) -> list[Check]:
    """What the workers' downloads need: ffmpeg always; the cookies file and proxy when
    set; yt-dlp's runtime, solver and impersonation when the inputs are on YouTube."""
    checks = [check_tool("ffmpeg"), check_tool("ffprobe")]
    if cfg.cookies_file is not None:
        checks.append(check_cookies(cfg.cookies_file))
    checks += proxy_checks(cfg)
    plugins = check_plugin_dirs(cfg.ytdlp.get("plugin_dirs", ()))
    if "plugin_dirs" in cfg.ytdlp:
        checks.append(plugins)
    if youtube and not plugins.failed:  # yt-dlp cannot start with a plugin folder missing
        checks += check_ytdlp(cfg)
    return checks


def doctor_checks(cfg: DownloadConfig, runner: str | None, urls: Iterable[str] = ()) -> list[Check]:
    """Everything, for a YouTube run of this profile: each optional filesystem too."""
    used = dict.fromkeys(scheme_of(u) for u in urls)
    checks = [check_tool("ffmpeg"), check_tool("ffprobe"), check_ytdlp_version()]
    plugins = check_plugin_dirs(cfg.ytdlp.get("plugin_dirs", ()))
    if "plugin_dirs" in cfg.ytdlp:
        checks.append(plugins)
    if not plugins.failed:  # yt-dlp cannot start with a plugin folder that is not there
        checks += check_ytdlp(cfg)
    checks.append(check_cookies(cfg.cookies_file))
    checks += proxy_checks(cfg)
    checks += [check_filesystem(s, needed=s in used) for s in dict.fromkeys([*used, "gs", "s3"])]
    checks.append(check_runner(runner))
    return checks
