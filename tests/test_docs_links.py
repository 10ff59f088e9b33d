"""The documents' cross-references lead somewhere: every relative Markdown link of README.md, docs/*.md,
validation/README.md and phantoms/README.md names a file that exists (and, with ``#anchor``, a heading of it); every
section named across documents (``docs/check.md "Title"``) is a heading of that document; and every section named
within one (``see "Title"``, ``"Title" above`` / ``below``) is a heading, or a bold paragraph or item lead, of it.
README.md and docs/check.md sent the reader to docs/check.md "What the range level covers", a bullet inside a list
that no link or table of contents could find (audit 24 "docs" F6); it is a heading now."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "validation" / "README.md",
        ROOT / "phantoms" / "README.md"]


def _prose(path: Path) -> str:
    """The document without its fenced code blocks (a ``# comment`` there is no heading)."""
    return re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def _headings(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} +(.+?) *#*$", _prose(path), re.M)]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens and underscores dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _names(title: str, headings: list[str]) -> bool:
    """Whether ``title`` names one of ``headings``: the heading itself, or its start before ": ", ", " or " (" (e.g.
    "Real third-party data" for "Real third-party data: APTG/2022_DCPT_LET (...)")."""
    return any(h == title or any(h.startswith(title + sep) for sep in (": ", ", ", " (")) for h in headings)


def _flat(path: Path) -> str:
    return " ".join(_prose(path).split())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(doc):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _flat(doc)):
        if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in {_slug(h) for h in _headings(dest)}):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, f"{doc.relative_to(ROOT)}: {bad}"


def test_sections_named_across_documents_are_headings():
    found, bad = 0, []
    for doc in DOCS:
        for file, title in re.findall(r"((?:docs|validation|phantoms)/[\w.-]+\.md|README\.md) \"([^\"]{3,100})\"",
                                      _flat(doc)):
            found += 1
            dest = ROOT / file
            if not dest.exists() or not _names(title, _headings(dest)):
                bad.append(f'{doc.relative_to(ROOT)}: {file} "{title}"')
    assert found >= 10 and not bad, bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_sections_named_within_a_document_exist(doc):
    text = _prose(doc)
    leads = re.findall(r"^ *(?:\d+\. |- )?\*\*([^*]+?)\.?\*\*", text, re.M)   # bold paragraph and item leads
    heads = _headings(doc)
    bad = []
    for m in re.finditer(r'(?:\bsee "([^"]{3,100})"|"([^"]{3,100})" (?:above|below)\b)', _flat(doc)):
        title = m.group(1) or m.group(2)
        if not (_names(title, heads) or any(lead == title or lead.startswith(title) for lead in leads)):
            bad.append(title)
    assert not bad, f"{doc.relative_to(ROOT)} names sections it does not have: {bad}"


def test_the_range_level_section_is_a_heading_that_the_references_name():
    """The five references of audit 24's F6 (README.md and docs/check.md) name a heading, which a link can reach."""
    assert "What the range level covers" in _headings(ROOT / "docs" / "check.md")
    n = sum(_flat(d).count('"What the range level covers"') for d in (ROOT / "README.md", ROOT / "docs" / "check.md"))
    assert n >= 5, n
