"""The README and docs/ link to files and sections that exist, and stand on their own."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # '#' in code is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, flags=re.M)}


def local_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


def test_slug_follows_github():
    assert slug("No-reference score (BRISQUE)") == "no-reference-score-brisque"
    assert slug("Evaluation (`eval.py`) and derained images (`show.py`)") == \
        "evaluation-evalpy-and-derained-images-showpy"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_reach_existing_files_and_sections(page):
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no section #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_do_not_point_outside_the_project(page):
    outside = [t for t in local_links(page) if not (page.parent / t.partition("#")[0]).resolve()
               .is_relative_to(ROOT)]
    assert not outside and "../shared" not in page.read_text(), outside


def test_readme_stays_a_front_door():
    """At most 16 KB: details belong in docs/, one page per subject."""
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 16 * 1024, f"README.md is {size} bytes; move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tests_named_in_the_docs_exist(page):
    """A guarantee's proof (docs/reliability.md) names a test: it must still be there."""
    defined = set()
    for test_file in (ROOT / "tests").glob("*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", test_file.read_text(), flags=re.M))
    named = set(re.findall(r"`(?:[\w/]+\.py::)?(test_\w+)`", page.read_text()))
    assert named <= defined, f"{page.name} names missing tests: {sorted(named - defined)}"
