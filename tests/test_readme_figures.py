"""Every figure the README states comes from a committed script, and is checked against what
that script wrote: the latency fit's summary (benchmarks/published_latency.py), the zoo's gains
and the CLI table's estimates (benchmarks/compare_zoo.py), the runtime's op count, and the
quickstart itself, run as printed."""
import json
import re
import subprocess
import sys

from tests.project_files import ROOT

README = (ROOT / "README.md").read_text()
PUBLISHED = (ROOT / "benchmarks" / "published" / "results.md").read_text()
ZOO = (ROOT / "benchmarks" / "results" / "refit" / "results.md").read_text()


def _block_after(marker: str) -> str:
    """The first fenced block that opens after ``marker``."""
    start = README.index(marker)
    return next(m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)\n```$", README, re.M | re.S) if m.start() > start)


def test_the_fit_summary_is_the_one_the_script_printed():
    for line in _block_after("python benchmarks/published_latency.py` prints").splitlines():
        assert line in PUBLISHED, line
    fit = json.loads((ROOT / "benchmarks" / "published" / "fit.json").read_text())
    params, rows, sources = re.search(r"Its (\d+) parameters are fitted on (\d+) published device measurements "
                                      r"from (\d+) sources", " ".join(README.split())).groups()
    assert int(params) == len(fit["fit"])
    assert f"{rows} rows, {sources} sources, leave-one-source-out" in PUBLISHED
    band = round(fit["band"] * 100)
    assert f"±{band} %" in README and f"above {1 + fit['band']:.2f}×" in README


def test_the_zoo_figures_are_the_zoo_pages():
    gains = re.search(r"(\d+) rows are estimated gains beyond the band", " ".join(README.split())).group(1)
    assert f"{gains}/37 rows are" in ZOO and "37-model benchmark zoo" in README
    cli = _block_after("Command line (the first set-up command")
    base, new = re.search(r"est\. latency A15 \(ms, [^)]*\)\s+(\S+)\s+(\S+)", cli).groups()
    assert re.search(rf"\| distilbert-base \|.*\| {re.escape(base)} / {re.escape(new)} \(", ZOO)


def test_the_runtime_op_count_is_the_runtimes():
    from ane_rewrite.runtime.ops import OPS

    assert re.search(rf"\({len(OPS)} MIL\s+op types", README)


def test_the_quickstart_prints_what_the_readme_shows(tmp_path):
    code = re.search(r"```python\n(.*?)\n```", README, re.S).group(1)
    shown = _block_after("```python")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for line in shown.splitlines():
        if line.strip() and "…" not in line and not re.search(r"\d+\.\d+ µs|PSNR|'latency_ms'|'peak", line):
            assert line in out, line  # pass counts, declines, the band: as printed
    assert re.search(r"equivalent over 3 draws: PSNR (\d+)\.\d dB", out)
    latency = re.search(r"'latency_ms': ([\d.]+)", shown).group(1)
    assert f"'latency_ms': {latency}" in out
