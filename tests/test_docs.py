"""The user documentation (README.md and docs/*.md) stands on its own.

A user gets only this repository, so the docs must not send them to the development
workspace's method digest (METHODS.md), and every relative link must reach a file of the
repository (and, for a Markdown file, a heading that exists there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

# [text](target) and ![alt](target), with an optional "title" or 'title'; targets hold no
# spaces.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
# [label]: target (reference-style definitions).
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
# Paths written out in the text, e.g. "see docs/training.md".
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]+\.md\b")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, where links are not links."""
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path``: lower case, punctuation removed,
    spaces turned into hyphens, a repeated heading suffixed ``-1``, ``-2``, ..."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2))  # link -> its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link in ``path`` that is not an absolute URL."""
    for number, line in _prose_lines(path):
        targets = [m.group(1) for m in LINK.finditer(line)]
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            if not SCHEME.match(target):
                yield number, target


def link_problem(source: Path, target: str) -> str | None:
    """Why ``target``, linked from ``source``, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    resolved = (source.parent / file_part).resolve() if file_part else source
    if not resolved.is_relative_to(ROOT):
        return "points outside the repository (a user has only the repository)"
    if not resolved.exists():
        return f"{_name(resolved)} does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
        return f"{_name(resolved)} has no heading with the anchor #{anchor}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_docs_do_not_refer_to_the_method_digest(doc: Path) -> None:
    hits = [
        f"{_name(doc)}:{number}"
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1)
        if "METHODS.md" in line
    ]
    assert not hits, (
        f"{', '.join(hits)}: METHODS.md is not part of the repository; explain the method in "
        "docs/methods.md and link there, or cite the paper (docs/methods.md, References)."
    )


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for number, target in relative_links(doc):
        problem = link_problem(doc, target)
        if problem is not None:
            broken.append(f"{_name(doc)}:{number}: ({target}) {problem}")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_docs_paths_named_in_the_text_exist(doc: Path) -> None:
    missing = [
        f"{_name(doc)}:{number}: {path}"
        for number, line in _prose_lines(doc)
        for path in DOCS_PATH.findall(line)
        if not (ROOT / path).is_file()
    ]
    assert not missing, "documents named but absent:\n" + "\n".join(missing)


def test_the_checks_catch_what_they_should(tmp_path: Path) -> None:
    """The link checker itself: a missing file, an unknown anchor and a path out of the
    repository are reported; a good file link, a good anchor and a URL are not."""
    assert link_problem(ROOT / "README.md", "docs/methods.md") is None
    assert link_problem(ROOT / "README.md", "docs/methods.md#the-task-aware-loss") is None
    assert link_problem(ROOT / "docs" / "methods.md", "#references") is None
    assert "does not exist" in str(link_problem(ROOT / "README.md", "docs/nowhere.md"))
    assert "#nowhere" in str(link_problem(ROOT / "README.md", "docs/methods.md#nowhere"))
    assert "outside" in str(link_problem(ROOT / "README.md", "../shared/METHODS.md"))
    doc = tmp_path / "x.md"
    doc.write_text(
        "# A `code` heading: (with) punctuation\n## Twice\n## Twice\n"
        "[web](https://example.org) [here](#twice-1) ![img](pic.png 'title')\n"
        "```\n[not a link](nowhere.md)\n```\n[ref]: other.md\n",
        encoding="utf-8",
    )
    assert heading_anchors(doc) == {"a-code-heading-with-punctuation", "twice", "twice-1"}
    assert [t for _, t in relative_links(doc)] == ["#twice-1", "pic.png", "other.md"]
