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


def test_every_config_the_makefile_runs_exists():
    """A target's loop (`for m in $(BASELINES); do ... configs/.../annomi-$$m.yaml`) is expanded over
    its values, so a config moved to another folder breaks this test, not a newcomer's `make`."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^([A-Z_]+)\s*:=\s*(.*?)\s*$", text, flags=re.M))
    named = 0
    for line in text.splitlines():
        loops = [(name, re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), values).split())
                 for name, values in re.findall(r"for (\w+) in ([^;]+);", line)]
        for path in re.findall(r"configs/[\w./$-]+\.yaml", line):
            paths = [path]
            for name, values in loops:
                paths = [p.replace(f"$${name}", value) for p in paths for value in values]
            for expanded in paths:
                named += 1
                assert "$" not in expanded, f"Makefile: {path} has a variable this test cannot expand"
                assert (ROOT / expanded).exists(), f"Makefile runs {expanded} ({path}), which does not exist"
    assert named > 10, "the Makefile names fewer configs than it did; is the pattern still right?"
