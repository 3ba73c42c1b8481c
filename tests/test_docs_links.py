"""Every relative link of the documentation resolves: the file exists and, for `file.md#anchor`,
the anchor is one of its headings — the README, docs/ and bench/ point at each other, and a
section that moves must take its links along."""

import re

import pytest

from tests.conftest import ROOT

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", markdown), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def _links(path) -> list[str]:
    return [link for link in LINK.findall(FENCE.sub("", path.read_text())) if not re.match(r"[a-z]+:", link)]


def test_the_documents_have_links():
    assert len(DOCS) >= 7
    assert "docs/operations.md#settings" in _links(ROOT / "README.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    broken = []
    for link in _links(doc):
        target, _, anchor = link.partition("#")
        file = (doc.parent / target).resolve() if target else doc
        if not file.exists():
            broken.append(link)
        elif anchor and anchor not in _slugs(file.read_text()):
            broken.append(link)
    assert broken == []
