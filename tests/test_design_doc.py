"""docs/DESIGN.md: every citation in the code names a section it has, and its data contract
lists what shards/ defines."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from shards import manifest, schema

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "DESIGN.md"
CITATION = re.compile(r"DESIGN\.md,? section (\d+(?:\.\d+)?)")


def sections() -> dict[str, str]:
    """Section number ("2", "3.1") -> its text, up to the next heading of any level."""
    parts = re.split(r"^#{2,3} (\d+(?:\.\d+)?)\.? [^\n]*$", DOC.read_text(), flags=re.M)
    return {number: text for number, text in zip(parts[1::2], parts[2::2], strict=True)}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    suffixes = {".py", ".md", ".yaml", ".toml", ""}
    return [ROOT / n for n in names if Path(n).suffix in suffixes and (ROOT / n).is_file()]


def test_the_design_has_the_sections_it_lists():
    assert {"1", "2", "3", "3.1", "3.2", "3.3", "3.4", "4", "4.3", "5", "6"} <= set(sections())


def test_every_citation_names_a_section_of_docs_design_md():
    known = set(sections())
    cited = 0
    for path in tracked_text_files():
        if path in (DOC, Path(__file__).resolve()):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        where = path.relative_to(ROOT)
        assert "ENV-NOTES" not in text, f"{where} cites ENV-NOTES (now docs/DESIGN.md section 6)"
        for bare in re.finditer(r"(?<![\w/])DESIGN\.md", text):
            line = text[: bare.start()].count("\n") + 1
            raise AssertionError(f"{where}:{line} cites DESIGN.md without its folder (docs/)")
        for match in CITATION.finditer(text):
            cited += 1
            assert match.group(1) in known, f"{where} cites section {match.group(1)}"
    assert cited >= 10  # the model, ingest and pipelines.yaml all cite it


def _backticked(text: str) -> set[str]:
    return {w for chunk in re.findall(r"`([^`]+)`", text) for w in re.findall(r"\w+", chunk)}


def test_the_documented_sample_json_lists_every_field_of_the_schema():
    documented = _backticked(sections()["4.3"])
    for cls in (schema.SampleMeta, schema.ExtractionParams, schema.WordRecord):
        missing = {f.name for f in dataclasses.fields(cls)} - documented
        assert not missing, f"docs/DESIGN.md section 4.3 lacks {cls.__name__} fields {missing}"
    assert f"SCHEMA_VERSION = {schema.SCHEMA_VERSION}" in sections()["4.3"] or (
        f"SCHEMA_VERSION = {schema.SCHEMA_VERSION}" in DOC.read_text()
    )


def test_the_documented_manifest_lists_every_column():
    documented = _backticked(sections()["4.5"])
    missing = set(manifest.SCHEMA.names) - documented
    assert not missing, f"docs/DESIGN.md section 4.5 lacks manifest columns {missing}"
    assert set(manifest.STATUSES) <= documented


def test_the_documented_sub_segment_count_is_the_formats():
    assert f"{schema.SUBSEGMENTS} per segment" in sections()["2"]
