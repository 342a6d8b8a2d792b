"""The layers of model/ import one way:
config < data < nn < objectives < eval < inference < cli < train.

Every module under model/ is parsed (ast, nothing is imported or run) and each of its
`model.*` imports, at any depth of the file, is checked against the order. `config`,
`seeding` and `distributed` are neutral: every layer may import them and they import no
layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS = ("data", "nn", "objectives", "eval", "inference", "cli", "train")  # lowest first
NEUTRAL = ("config", "seeding", "distributed")


def layer_of(module: str) -> int | None:
    """0 for a neutral module, 1.. for the layers, None for the package root `model`."""
    parts = module.split(".")
    assert parts[0] == "model", module
    if len(parts) == 1:
        return None
    if parts[1] in NEUTRAL:
        return 0
    if parts[1] == "__main__":  # `python -m model` is the command line's door
        return 1 + LAYERS.index("cli")
    if parts[1] in LAYERS:
        return 1 + LAYERS.index(parts[1])
    raise ValueError(f"{module}: in no layer; add it to LAYERS or NEUTRAL in {__file__}")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, name: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every `model.*` import in the file, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "model":  # `from model import nn`: the names are modules
                out += [(node.lineno, f"model.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, base))
    return [(line, m) for line, m in out if m == "model" or m.startswith("model.")]


def violations(root: Path) -> list[str]:
    """Every import under root/model/ that goes against the order, as 'file:line: a -> b'."""
    found = []
    for path in sorted((root / "model").rglob("*.py")):
        name = module_name(path, root)
        own = layer_of(name)
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in imported(tree, name, path.name == "__init__.py"):
            theirs = layer_of(target)
            if own is None:  # the package root imports nothing of its own
                bad = True
            elif own == 0:  # neutral modules stand below every layer
                bad = theirs != 0
            else:
                bad = theirs is None or theirs > own
            if bad:
                found.append(f"{path.relative_to(root)}:{line}: {name} -> {target}")
    return found


def test_model_imports_flow_one_way():
    assert violations(ROOT) == []


def test_every_layer_exists_and_holds_modules():
    for layer in LAYERS:
        assert list((ROOT / "model" / layer).glob("*.py")), f"model/{layer}/ is empty"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"model/data/batch.py": "from model.nn.masking import SpanMasks\n"}, "data.batch -> "),
        ({"model/nn/backbone.py": "import model.objectives.common\n"}, "nn.backbone -> "),
        ({"model/eval/ev.py": "def f():\n    from model.train import module\n"}, "eval.ev -> "),
        ({"model/objectives/x.py": "from ..train import module\n"}, "-> model.train"),
        ({"model/data/x.py": "from model import nn\n"}, "-> model.nn"),
        ({"model/config.py": "from model.data.batch import Batch\n"}, "config -> "),
        ({"model/__init__.py": "from model.config import PAD_ID\n"}, "model -> model.config"),
        ({"model/cli/embed.py": "from model.train.module import X\n"}, "cli.embed -> "),
        ({"model/inference/api.py": "from model.cli import main\n"}, "inference.api -> "),
    ],
)
def test_the_check_catches_an_import_against_the_order(tmp_path, files, expected):
    root = write(tmp_path, {"model/__init__.py": "", **files})
    found = violations(root)
    assert len(found) == 1 and expected in found[0], found


def test_the_check_allows_imports_down_and_sideways(tmp_path):
    root = write(
        tmp_path,
        {
            "model/__init__.py": '"""doc"""\n',
            "model/config.py": "import math\n",
            "model/train/module.py": (
                "from model.eval.evaluation import embed_batch\nfrom model.config import X\n"
            ),
            "model/objectives/span.py": "from model.nn.backbone import Frames\nfrom . import common\n",
            "model/nn/masking.py": "from model.data.batch import SpanMasks\nimport model.distributed\n",
        },
    )
    assert violations(root) == []


def test_a_module_outside_every_layer_is_reported(tmp_path):
    root = write(tmp_path, {"model/__init__.py": "", "model/helpers.py": "import os\n"})
    with pytest.raises(ValueError, match=r"model\.helpers: in no layer"):
        violations(root)
