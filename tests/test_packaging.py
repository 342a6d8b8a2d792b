"""What ships where: production packages never reach into dev code, and the worker image
carries neither devtools/ nor tests/ nor bench/; tests and benchmarks share helpers only
through devtools/ and tests/helpers.py."""

from __future__ import annotations

import ast
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
    assert {*DEV_ONLY, ".venv", ".git", "demo-out", "runs"} <= ignored
