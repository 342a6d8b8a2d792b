"""What ships where: production packages never reach into dev code, and the worker image
carries neither devtools/ nor tests/ nor bench/; tests and benchmarks share helpers only
through devtools/ and tests/helpers.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("ingest", "shards", "model")
DEV_ONLY = ("devtools", "tests", "bench")


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports (absolute names; relative ones are skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    "path", [*python_files(*PRODUCTION), ROOT / "train.py"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_production_code_never_imports_dev_code(path):
    bad = sorted(m for m in imported_modules(path) if _top(m) in DEV_ONLY)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_test_files_share_helpers_only_through_helpers_and_devtools():
    for path in python_files("tests"):
        own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        others = {
            m
            for m in imported_modules(path)
            if m.startswith("tests.") and m.rsplit(".", 1)[-1].startswith("test_") and m != own
        }
        assert not others, f"{path.name} imports test modules {sorted(others)}"


def test_benchmarks_import_only_devtools_and_production_code():
    bench_modules = {p.stem for p in (ROOT / "bench").glob("*.py")}
    for path in python_files("bench"):
        bad = {m for m in imported_modules(path) if _top(m) in {"tests", "bench", *bench_modules}}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_worker_image_copies_no_dev_code():
    copied = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] in ("COPY", "ADD"):
            copied += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    assert {"ingest", "shards"} <= set(copied)
    assert not {".", *DEV_ONLY} & set(copied), copied
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {*DEV_ONLY, ".venv", ".git", "demo-out", "runs", "out"} <= ignored


# --- the worker image: one source of truth for versions, a linted Dockerfile ---


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, joined = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        joined += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = joined.strip().partition(" ")
            lines.append((word.upper(), rest))
            joined = ""
    return lines


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_installs_the_pins_of_pyproject_and_names_no_version_of_its_own():
    project = pyproject()["project"]
    pins = dict(d.split("==", 1) for d in project["dependencies"] if "==" in d)
    args = dict(a.split("=", 1) for w, a in dockerfile_instructions() if w == "ARG" and "=" in a)
    assert args["BEAM_VERSION"] == pins["apache-beam"], "the base image is the pinned Beam"
    assert project["requires-python"] == f">={args['PYTHON_VERSION']}"
    runs = [a for w, a in dockerfile_instructions() if w == "RUN"]
    installs = [cmd for a in runs for cmd in a.split("&&") if "pip install" in cmd]
    assert len(installs) == 1, installs
    assert "==" not in " ".join(runs) and "requirements" not in installs[0]
    (target,) = [w.strip("\"'") for w in installs[0].split()[2:] if not w.startswith("-")]
    name, _, extras = target.partition("[")
    assert name == "."
    extras = set(extras.rstrip("]").split(","))
    assert extras == {"gcp", "aws"}, "what the dataflow profile and s3:// outputs need"
    assert extras <= set(project["optional-dependencies"]), "extras that pyproject defines"
    assert any("pip check" in a for a in runs), "the build fails on conflicting requirements"


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "hadolint"
    cmd = [str(exe), "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_hadolint_passes_the_dockerfile_and_still_fails_a_bad_one(tmp_path):
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN cd /tmp && pip install requests\n")
    failed = hadolint(bad)
    assert failed.returncode != 0, "the config still fails what it does not ignore"
    assert "DL3003" in failed.stdout and "DL3013" in failed.stdout, failed.stdout
