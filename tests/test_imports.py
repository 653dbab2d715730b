"""Layers stay layers: no module of fillm_spacy imports a folder above its own.

Every .py under fillm_spacy/ is parsed (never imported) and every import naming the package is
checked, at module level or inside a function alike: `from ..x import y`, `from . import x`,
`from fillm_spacy.x import y`, `import fillm_spacy.x`. The order is the one docs/architecture.md
states ("Which folder may import which"); change both together.
"""

import ast
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fillm_spacy"

# A folder may import its own modules and the folders of a lower rank, never one of the same or
# a higher rank. Keep in step with docs/architecture.md, "Which folder may import which".
RANK = {
    # The package's own __init__ (load(), __version__): imports nothing of the package, so
    # anything may import it.
    "": 0,
    # The library.
    "readers": 1,
    "models": 2,
    "layers": 3,  # thinc/torch layers: models/ (where weights come from)
    "llm": 3,  # the generative side: models/, readers/ (never layers/, nor layers/ it)
    "pipeline": 4,  # spaCy components and pipeline tools: layers/, llm/, models/, readers/
    # Tools on top of the library; the library never imports them.
    "evaluation": 5,
    "workflow": 5,
    "adapt": 5,  # language adaptation of the base LLM: layers/, models/
    "finetune": 5,  # generative fine-tuning: llm/, readers/
    "annotate": 6,
    "bench": 7,  # `bench annotate` runs the annotator
}


def folder_of(dotted: str) -> Optional[str]:
    """The top folder of a module of the package ("" for the package itself), None outside it."""
    parts = dotted.split(".")
    if parts[0] != "fillm_spacy":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in RANK else ""


def imported_modules(path: Path, root: Path = PACKAGE) -> Iterator[Tuple[int, str]]:
    """(line, dotted module) for every import in a file of the package `root`, relative ones resolved."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from (for __init__.py too)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                assert base, f"{path}:{node.lineno}: relative import above the package"
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            # `from . import x`, `from fillm_spacy import x`: each x may be a module of its own.
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def violations(root: Path = PACKAGE) -> List[str]:
    """Every import in the package `root` of a folder with a rank not below the importer's."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        source = relative.parts[0] if len(relative.parts) > 1 else ""
        for line, module in imported_modules(path, root):
            target = folder_of(module)
            if target is None or target == source or RANK[target] < RANK[source]:
                continue
            # One line per import statement and folder (not one per imported name).
            found.setdefault(
                (relative.as_posix(), line, target),
                f"fillm_spacy/{relative.as_posix()}:{line} ({source or 'fillm_spacy'}/) imports "
                f"{module} ({target or 'fillm_spacy'}/)",
            )
    return list(found.values())


def test_every_folder_of_the_package_has_a_rank():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(RANK) - {""}, "a new folder needs its place in RANK and in docs/architecture.md"


def test_no_module_imports_a_folder_above_its_own():
    found = violations()
    assert not found, "imports against the order in docs/architecture.md:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "where,source,expected",
    [
        ("models/x.py", "from ..layers.llm_shim import LLMShim\n", True),
        ("llm/x.py", "def f():\n    from fillm_spacy.pipeline.summarizer import DEFAULT_PROMPT\n", True),
        ("layers/x.py", "import fillm_spacy.llm.local_model\n", True),
        ("layers/x.py", "from .. import bench\n", True),
        ("readers/x.py", "from fillm_spacy import workflow\n", True),
        ("x.py", "from .models import loading\n", True),
        ("pipeline/x.py", "from ..llm.headline import clean_headline\n", False),
        ("bench/x.py", "from .. import load\nfrom ..annotate import annotate\n", False),
        ("llm/x.py", "from . import tasks\nfrom ..models.loading import load_base_llm\n", False),
        ("llm/sub/x.py", "from ...readers.records import read_jsonl\n", False),
    ],
)
def test_the_check_sees_upward_imports_wherever_they_are(tmp_path, where, source, expected):
    """The checker itself: relative, absolute, lazy (inside a function) and `from .. import x`."""
    root = tmp_path / "fillm_spacy"
    (root / where).parent.mkdir(parents=True, exist_ok=True)
    (root / where).write_text(source)
    assert bool(violations(root)) == expected
