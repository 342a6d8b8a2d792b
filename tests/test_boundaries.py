"""The rooms' doors: ``ingest/`` and ``model/`` reach the format on disk only through ``shards/``.

Neither imports tar machinery (``tarfile``, webdataset's tar and file internals), nor
names a file of an output folder (``_index``, ``_tmp``, ``.tar``) or a tar member
(``.jpg``, ``mel.npy``, the schema's member constants); ``model/`` opens no file of
shards itself (no fsspec). ``shards/``'s library never imports its tools, and nothing
of the project imports matplotlib when it is imported.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import webdataset

ROOT = Path(__file__).resolve().parent.parent

TAR_MODULES = {"tarfile"} | {
    f"webdataset.{m}" for m in ("tariterators", "gopen", "writer", "cache", "compat")
}
# webdataset's top-level names that read or write tars or open files: those defined in the
# modules above (WebLoader, a DataLoader, is the one name of compat that stays allowed)
TAR_NAMES = {
    name
    for name in dir(webdataset)
    if getattr(getattr(webdataset, name), "__module__", "") in TAR_MODULES
} | {m.split(".")[1] for m in TAR_MODULES if m.startswith("webdataset.")}
TAR_NAMES.discard("WebLoader")
LAYOUT_NAMES = {"INDEX_DIR", "TMP_DIR", "SHARD_SUFFIX", "SHARD_GLOB", "index_file", "rows_file",
                "temp_path", "JSON_MEMBER", "MEL_MEMBER", "FRAME_MEMBER_RE", "frame_member",
                "split_name", "TarScan", "iter_entries"}  # fmt: skip
TEXT = re.compile(r"(?<!\w)_(index|tmp)\b|\.tar\b|mel\.npy|\.jpe?g\b|tariterators")


def violations(source: str, no_files: bool = False) -> list[str]:
    """What in one module's source crosses the door, one line each."""
    found = []
    tree = ast.parse(source)
    wds_aliases = {"webdataset"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "webdataset":
                    wds_aliases.add(a.asname or a.name)
                if a.name in TAR_MODULES or (no_files and a.name.split(".")[0] == "fsspec"):
                    found.append(f"line {node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if (
                node.module in TAR_MODULES
                or (node.module == "webdataset" and names & TAR_NAMES)
                or (no_files and node.module.split(".")[0] == "fsspec")
            ):
                found.append(f"line {node.lineno}: from {node.module} import {sorted(names)}")
            if node.module.startswith("shards") and names & LAYOUT_NAMES:
                found.append(f"line {node.lineno}: imports {sorted(names & LAYOUT_NAMES)}")
        elif isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if base in wds_aliases and node.attr in TAR_NAMES:
                found.append(f"line {node.lineno}: {base}.{node.attr}")
            elif node.attr in LAYOUT_NAMES:
                found.append(f"line {node.lineno}: .{node.attr}")
    for n, line in enumerate(source.splitlines(), 1):
        if m := TEXT.search(line):
            found.append(f"line {n}: names {m.group(0)!r}")
    return found


def sources(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", ["ingest", "model"])
def test_ingest_and_model_reach_shards_only_through_its_door(room):
    assert sources(room), f"no sources under {room}/"
    bad = [
        f"{path.relative_to(ROOT)}: {v}"
        for path in sources(room)
        for v in violations(path.read_text(), no_files=room == "model")
    ]
    assert bad == []


@pytest.mark.parametrize(
    "snippet,why",
    [
        ("import tarfile", "import tarfile"),
        ("from webdataset.tariterators import group_by_keys", "webdataset.tariterators"),
        ("from webdataset import tarfile_to_samples", "tarfile_to_samples"),
        ("import webdataset as wds\nwds.gopen(url)", "wds.gopen"),
        ("import webdataset as wds\nds = wds.WebDataset(urls)", "wds.WebDataset"),
        ("fs.glob(f'{prefix}-*.tar')", "'.tar'"),
        ("manifest.INDEX_DIR", ".INDEX_DIR"),
        ("from shards.schema import MEL_MEMBER", "MEL_MEMBER"),
        ("path = '_index/rows.parquet'", "'_index'"),
        ("x = key + '.00.jpg'", "'.jpg'"),
        ("import fsspec", "import fsspec"),
    ],
)
def test_the_door_check_catches_what_crossed_before(snippet, why):
    found = violations(snippet, no_files=True)
    assert found and why in " ".join(found)


def test_the_door_check_lets_pipeline_stages_and_layout_functions_through():
    ok = (
        "import webdataset as wds\n"
        "stages = [wds.shuffle(10), wds.batched(2), wds.slice(0, 3), wds.split_by_node]\n"
        "loader = wds.WebLoader(ds)\n"
        "from shards import layout, reader\n"
        "layout.remove_group(out, layout.group_prefix(ids))\n"
        "reader.stream_raw(urls, on_error=handler)\n"
        "n = candidate_index(4, 2)  # tokenizer.json\n"
    )
    assert violations(ok, no_files=True) == []


def test_the_shards_library_never_imports_its_tools():
    library = [p for p in sources("shards") if "cli" not in p.relative_to(ROOT / "shards").parts]
    assert {p.name for p in library} >= {"reader.py", "layout.py", "writer.py", "schema.py"}
    for path in library:
        if path.name == "__main__.py":  # `python -m shards` is the tools' entry point
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("shards.cli"), f"{path.name} imports the tools"


def test_nothing_imports_matplotlib_at_import_time():
    """shards (library and tools) and ingest import and run without matplotlib; model/ and
    train.py import it nowhere at module level (Lightning may import it on its own)."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # importing it now fails
        "import shards.reader, shards.writer, shards.layout, shards.manifest, shards.schema\n"
        "import shards.cli.main, shards.cli.show, shards.cli.verify, shards.cli.inspection\n"
        "import shards.cli.sample, ingest.pipeline\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in [*sources("model"), ROOT / "train.py"]:
        top = ast.parse(path.read_text()).body
        for node in top:
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                mods.append(getattr(node, "module", None) or "")
                assert not any(m.split(".")[0] == "matplotlib" for m in mods), path
