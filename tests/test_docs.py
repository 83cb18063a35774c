"""The user-facing docs: the README is a front door (at most 200 lines, its two set-up commands
first), every relative link of the README and of docs/ resolves (a file, and a heading where
the link names one), no date, commit id or issue number a reader cannot see, and the results
page is the one the benchmark pages make."""
import re

import pytest

from tests.helpers import doc_anchors
from tests.project_files import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    first = re.findall(r"```bash\n(.+?)\n```", readme)[:2]
    assert first[0].endswith("ane-rewrite optimize") and first[1].endswith("python -m pytest -q")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in doc_anchors(file.read_text()):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_date_commit_or_issue_number(doc):
    text = doc.read_text()
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", text) == []
    assert re.findall(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", text) == []
    assert re.findall(r"\bissues? #?\d+", text, flags=re.I) == []


def test_the_results_page_is_what_the_benchmark_pages_say():
    """docs/results.md is written by benchmarks/results_page.py from the pages the benchmark
    scripts wrote: a rerun that changes a page and not the results page fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    assert (ROOT / "docs" / "results.md").read_text() == page.render(), "run python benchmarks/results_page.py"
