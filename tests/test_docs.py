"""The documentation a newcomer follows: every relative link (and its #anchor), every `make`
target, and every config, example or benchmark file it names exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    out, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_exists(page):
    text = page.read_text()
    for label, target in re.findall(r"\[([^\]]*)\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: [{label}]({target}) points at a missing file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: [{label}]({target}): no heading #{anchor} in {dest.name}"


def test_every_make_target_and_named_file_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"`make ([a-z][\w-]*)", text) + re.findall(r"^make ([a-z][\w-]*)", text, flags=re.M):
            assert target in targets, f"{page.name}: `make {target}` is not a Makefile target"
        for path in re.findall(r"(?<![\w/.-])((?:configs|examples|benchmarks)/[\w./-]+\.(?:yaml|py|sh|csv|json|eaf))", text):
            assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"
