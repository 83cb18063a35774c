"""`ane-rewrite report`: one self-contained HTML page, opened in a real headless Chromium — its
chart drawn with a bar per chip and side, its tables filled, nothing fetched from anywhere."""
import io
import re

import pytest

import ane_rewrite
from ane_rewrite.cli import main
from tests.browser import Browser
from tests.helpers import exported_pair


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    exported_pair(folder)
    out = folder / "report.html"
    assert main(["report", str(folder / "rewritten.mlpackage"), "--baseline", str(folder / "baseline.mlpackage"),
                 "--out", str(out), "--draws", "2"]) == 0
    return out, {side: ane_rewrite.analyze(folder / f"{side}.mlpackage") for side in ("baseline", "rewritten")}


def test_the_page_is_self_contained(page):
    text = page[0].read_text()
    assert "<script" not in text and not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "@import" not in text and "url(" not in text


def test_the_page_renders_with_its_chart_and_tables_in_chromium(page):
    path, analyses = page
    with Browser() as browser:
        browser.open(path.as_uri())
        seen = browser.run("""
            const chart = document.getElementById('latency-chart').getBoundingClientRect();
            const bars = [...document.querySelectorAll('#latency-chart rect.bar')].map(r => {
                const box = r.getBoundingClientRect();
                return {side: r.classList[1], chip: r.dataset.chip, ms: +r.dataset.ms, width: box.width, height: box.height};
            });
            const tables = {};
            for (const t of document.querySelectorAll('table')) tables[t.className] = t.tBodies[0].rows.length;
            const cell = (cls, row, col) => document.querySelector(`table.${cls}`).tBodies[0].rows[row].cells[col].textContent;
            return {title: document.title, chart: [chart.width, chart.height], bars: bars, tables: tables,
                    linear: [...document.querySelectorAll('table.op-mix tbody tr')].filter(r => r.cells[0].textContent === 'linear')
                            .map(r => [r.cells[1].textContent, r.cells[2].textContent])[0],
                    fp16: cell('executed', 1, 2),
                    fetched: performance.getEntriesByType('resource').length};
        """)
        png = browser.screenshot()
    assert seen["title"] == "ane-rewrite report: rewritten.mlpackage"
    assert seen["chart"][0] > 300 and seen["chart"][1] > 100
    chips = list(analyses["rewritten"].estimates)
    assert {(b["side"], b["chip"]) for b in seen["bars"]} == {(s, c) for s in analyses for c in chips}
    widest = max(b["ms"] for b in seen["bars"])
    for bar in seen["bars"]:  # drawn, and as long as its figure says
        assert bar["height"] > 5 and bar["width"] == pytest.approx(560 * bar["ms"] / widest, abs=1.5), bar
        assert bar["ms"] == pytest.approx(analyses[bar["side"]].estimates[bar["chip"]]["latency_ms"])
    assert seen["tables"]["op-mix"] >= 10 and seen["tables"]["rules"] >= 3 and seen["tables"]["metrics"] == 7
    assert seen["tables"]["findings rewritten"] == len(analyses["rewritten"].findings)
    assert seen["tables"]["executed"] == 2
    assert seen["linear"] == [str(analyses["baseline"].metrics["op_mix"]["linear"]), "0"]
    assert float(seen["fp16"]) > 40  # the rewritten package's fp16 outputs against its own fp32 ones
    assert seen["fetched"] == 0
    from PIL import Image

    shot = Image.open(io.BytesIO(png)).convert("RGB")
    colors = {c for _, c in shot.getcolors(1 << 20)}
    assert (0x2F, 0x7E, 0xD8) in colors and (0x9A, 0xA5, 0xB1) in colors  # both sides' bars on screen
