"""Every semantics citation names a section that exists in docs/semantics.md.

The code, tests and docs cite the rules esm implements by the document's path followed by a
section sign and the section's number; the README links them with the section as the link's text
and the heading's anchor as its target. This test fails when a cited section or a linked anchor
does not exist, when a link's text and anchor name different sections, when a section sign
appears in code without naming docs/semantics.md (a citation of some other document), and on
any citation of the old, unpublished spec. Here the section sign is only ever written as an
escape, and the document's path is split where it would be a citation, so that this file cites
nothing itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "semantics.md"
SCANNED = ("esm", "connectors", "destinations", "tests", "benchmarks", "examples", "docs")
SKIPPED = {"node_modules", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

S = "\u00a7"
SECTION = r"\d+(?:\.\d+)?"
# the path, then one or more sections, each after a section sign (3.4; 8.5, 8.6; 8.5 and 8), also
# wrapped over comment lines
CITATION = re.compile(rf"docs/semantics\.md((?:(?:[\s#,]|and)*{S}{SECTION})+)")
CITED = re.compile(rf"{S}({SECTION})")
LINK = re.compile(rf"\[{S}({SECTION})\]\(docs/semantics\.md#([\w-]+)\)")
ANCHOR_LINK = re.compile(r"\]\((?:docs/)?semantics\.md#([\w-]+)\)")
OLD_SPEC = re.compile(rf"\bspec\s*{S}|AWS_SEMANTIC[S]", re.IGNORECASE)
HEADING = re.compile(r"^(#{2,3}) (\d+(?:\.\d+)?)\.? (.+)$")


@dataclass(frozen=True)
class Sections:
    numbers: frozenset[str]
    anchors: dict[str, str]  # GitHub anchor -> section number


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def sections(markdown: str) -> Sections:
    """The numbered ``## N.`` and ``### N.M`` headings; ValueError when the numbering is off."""
    numbers: set[str] = set()
    anchors: dict[str, str] = {}
    chapter = ""
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = HEADING.match(line)
        if in_code or match is None:
            continue
        hashes, number, _title = match.groups()
        if hashes == "##":
            if "." in number:
                raise ValueError(f"chapter heading with a sub-number: {line!r}")
            chapter = number
        elif number.split(".")[0] != chapter or "." not in number:
            raise ValueError(f"section {number} is not under chapter {chapter}: {line!r}")
        if number in numbers:
            raise ValueError(f"section {number} appears twice")
        numbers.add(number)
        anchors[slug(line.lstrip("#"))] = number
    return Sections(frozenset(numbers), anchors)


def problems(text: str, known: Sections, *, code: bool, own: bool = False) -> list[str]:
    """What is wrong with the citations in ``text``. ``code``: a section sign outside a
    ``docs/semantics.md`` citation is a problem; ``own``: the text is docs/semantics.md itself,
    whose bare section signs refer to its own sections."""
    out = [f"cites the unpublished spec: {m.group(0)!r}" for m in OLD_SPEC.finditer(text)]
    for m in CITATION.finditer(text):
        out += [
            f"cites {S}{n}, which docs/semantics.md does not have"
            for n in CITED.findall(m.group(1))
            if n not in known.numbers
        ]
    for m in LINK.finditer(text):
        number, anchor = m.groups()
        if known.anchors.get(anchor) != number:
            out.append(f"links [{S}{number}] to #{anchor}, which is not that section's anchor")
    for m in ANCHOR_LINK.finditer(text):
        if m.group(1) not in known.anchors:
            out.append(f"links #{m.group(1)}, which no heading of docs/semantics.md has")
    rest = LINK.sub("", CITATION.sub("", text))
    if own:
        out += [
            f"refers to {S}{n}, which it does not have"
            for n in CITED.findall(rest)
            if n not in known.numbers
        ]
    elif code and S in rest:
        stray = re.findall(rf".{{0,30}}{S}.{{0,10}}", rest)
        out.append(f"cites a section of some other document: {stray}")
    return out


def scanned_files() -> list[Path]:
    """README.md and every .py and .md file under SCANNED (npm's node_modules is never entered)."""
    files = [ROOT / "README.md"]
    for top in SCANNED:
        for folder, dirs, names in os.walk(ROOT / top):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
            files += [Path(folder, n) for n in sorted(names) if n.endswith((".py", ".md"))]
    return files


KNOWN = sections(DOC.read_text(encoding="utf-8"))


def test_the_document_has_its_chapters_and_the_decisions_section() -> None:
    assert {str(n) for n in range(1, 13)} <= KNOWN.numbers
    assert KNOWN.anchors["12-where-aws-is-silent-esms-decisions"] == "12"


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_citation_names_an_existing_section(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = problems(text, KNOWN, code=path.suffix == ".py", own=path == DOC)
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


def test_the_package_cites_the_document() -> None:
    """The docstrings point at the document (a scan that found nothing would prove nothing)."""
    cited = {
        n
        for path in scanned_files()
        if path.suffix == ".py"
        for m in CITATION.finditer(path.read_text(encoding="utf-8"))
        for n in CITED.findall(m.group(1))
    }
    assert {"2.4", "3.4", "6.5", "6.7", "7.3", "8.7", "10.2"} <= cited


# -- the checker itself ---------------------------------------------------------------------------

REF = "docs/semantics" + ".md"  # not a citation of the real document
SAMPLE = Sections(frozenset({"3", "3.4", "8", "8.5"}), {"34-partial": "3.4", "8-async": "8"})


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"(docs/semantics.md {S}3.5)", f"cites {S}3.5"),
        (f"(docs/semantics.md {S}3.4, {S}9)", f"cites {S}9"),
        (f"# see docs/semantics.md\n    # {S}7.1", f"cites {S}7.1"),
        (f"(spec {S}4.1)", "unpublished spec"),
        (f"the table of {S}4.4", "some other document"),
        (f"[{S}8.5]({REF}#8-async)", "not that section's anchor"),
        (f"[the rules]({REF}#9-gone)", "no heading"),
    ],
)
def test_the_checker_catches(text: str, complaint: str) -> None:
    found = problems(text, SAMPLE, code=True)
    assert any(complaint in p for p in found), found


def test_the_checker_accepts_good_citations() -> None:
    text = (
        f"(docs/semantics.md {S}3.4, {S}8.5 and {S}8) "
        f"[{S}3.4]({REF}#34-partial) [{S}8]({REF}#8-async)"
    )
    assert problems(text, SAMPLE, code=True) == []


def test_headings_must_nest_under_their_chapter() -> None:
    with pytest.raises(ValueError, match="not under chapter"):
        sections("## 3. SQS\n### 4.1 The record\n")
    assert sections("## 3. SQS\n### 3.4 Partial `batch` responses\n").anchors == {
        "3-sqs": "3",
        "34-partial-batch-responses": "3.4",
    }
