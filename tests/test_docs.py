"""The documents stay true to the tree: every relative link and image in README.md and docs/*.md
points at a file that exists (and, for a link into a markdown file, at one of its headings), and
every `python -m fillm_spacy...` command they name is a module whose `--help` works."""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
MODULE = re.compile(r"python -m (fillm_spacy(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


def code_and_prose(text: str) -> Tuple[List[str], str]:
    """The fenced blocks and inline code spans of a markdown text, and its prose without them."""
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    return blocks + INLINE_CODE.findall(prose), INLINE_CODE.sub("", prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a markdown file, numbered as GitHub numbers repeated ones."""
    seen: Dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def broken_links(document: Path, root: Path = ROOT) -> List[str]:
    """Relative links and images of one document that point nowhere, as 'target (why)'."""
    _, prose = code_and_prose(document.read_text(encoding="utf8"))
    problems = []
    for bang, _, target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        kind = "image" if bang else "link"
        if not resolved.exists():
            problems.append(f"{kind} {target} (no such file)")
        elif root not in resolved.parents and resolved != root:
            problems.append(f"{kind} {target} (outside the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{kind} {target} (no heading '{anchor}' in {resolved.name})")
    return problems


def named_modules() -> Set[str]:
    modules = set()
    for document in DOCUMENTS:
        code, _ = code_and_prose(document.read_text(encoding="utf8"))
        for span in code:
            modules.update(MODULE.findall(span))
    return modules


def test_the_documents_exist():
    assert (ROOT / "README.md").exists() and len(DOCUMENTS) > 1


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(document):
    assert broken_links(document) == []


def test_a_broken_link_is_caught(tmp_path):
    """The check itself: a missing file, a missing image and a missing heading are reported."""
    (tmp_path / "other.md").write_text("# Present heading\n", encoding="utf8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#present-heading) [gone](missing.md) ![pic](missing.png) [bad](other.md#absent)\n"
        "`[in code](not-checked.md)`\n",
        encoding="utf8",
    )
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert any("missing.md" in p for p in problems) and any("missing.png" in p for p in problems)
    assert any("absent" in p for p in problems)


def test_named_commands_parse_help():
    modules = sorted(named_modules())
    assert "fillm_spacy.annotate" in modules and "fillm_spacy.bench" in modules

    def run_help(module: str) -> Tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        return module, done.returncode, done.stderr[-500:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [(m, rc, err) for m, rc, err in pool.map(run_help, modules) if rc != 0]
    assert failed == []
