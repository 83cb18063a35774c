"""`ane-rewrite optimize --seq-len N1 N2`: one package per side, a function per length, each
length verified and executed; the JSON object holds the figures the table prints."""
import contextlib
import io
import json
import re

import pytest

from ane_rewrite.cli import main
from ane_rewrite.coreml.mil import function_names

ARGS = ["optimize", "tests.zoo:tiny_distilbert_model", "--seq-len", "16", "32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_lengths")
    results = {}
    for kind, extra in (("json", ["--json", "--compress", "int8"]), ("text", ["--no-verify"])):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(ARGS + ["--out", str(out / kind)] + extra)
        results[kind] = (code, stdout.getvalue(), stderr.getvalue(), out / kind)
    return results


def test_the_json_run_verifies_and_executes_every_length(runs):
    code, out, err, folder = runs["json"]
    assert code == 0, out + err
    assert all(line.startswith("[") for line in err.splitlines() if line.strip()), err  # progress only
    result = json.loads(out)
    assert result["schema"] == "ane-rewrite.optimize-lengths/1" and result["seq_lens"] == [16, 32]
    assert [r["function"] for r in result["lengths"]] == ["seq_16", "seq_32"]
    for r in result["lengths"]:
        n = r["seq_len"]
        assert r["inputs"] == {"input_ids": [1, n], "attention_mask": [1, n]}
        assert r["equivalence"]["ok"] and r["programs"]["rewritten"]["linear"] == 0
        executed = r["executed"]
        assert executed["ok"] and executed["rewritten"]["fp32_psnr_db"] >= 60 and executed["fp16_gap_db"] >= -1
        assert 30 < r["compressed_fp16_psnr_db"] < executed["rewritten"]["fp16_psnr_db"]  # int8's cost, measured
    assert result["compressed"]["weights_mib"] < result["compressed"]["rewritten_weights_mib"] / 1.5
    for side in ("baseline", "rewritten", "compressed"):
        assert function_names(result["packages"][side]) == ["seq_16", "seq_32"]


def test_the_table_prints_the_figures_of_the_json(runs):
    _, out, _, _ = runs["json"]
    code, text, _, _ = runs["text"]
    assert code == 0, text
    result = json.loads(out)
    blocks = re.split(r"^  (\d+) \(seq_\d+\)\s*$", text, flags=re.M)[1:]
    assert [int(n) for n in blocks[::2]] == [16, 32]
    for r, block in zip(result["lengths"], blocks[1::2]):
        programs = r["programs"]
        for key, label in (("ops", "ops \\(non-const\\)"), ("linear", "linear"), ("softmax", "softmax")):
            m = re.search(rf"^    {label}\s+(\d+)\s+(\d+)$", block, re.M)
            assert m and (int(m[1]), int(m[2])) == (programs["baseline"][key], programs["rewritten"][key]), key
        m = re.search(r"^    est\. latency (\w+) \(ms, ±(\d+) % held-out\)\s+(\S+)\s+(\S+)$", block, re.M)
        assert m, block
        assert int(m[2]) == round(programs["baseline"]["estimates"][m[1]]["band"] * 100)
        for side, shown in (("baseline", m[3]), ("rewritten", m[4])):
            assert shown == f"{programs[side]['estimates'][m[1]]['latency_ms']:.2f}"
        speedup = re.search(rf"^    speed-up {m[1]} \(a gain only above ([\d.]+)×\)\s+-\s+([\d.]+)×$", block, re.M)
        assert speedup and float(speedup[2]) == pytest.approx(float(m[3]) / float(m[4]), abs=0.02), block
        assert re.search(rf"^    equivalence PSNR \(dB\)\s+-\s+{r['equivalence']['psnr_db']:.1f}$", block, re.M)


def test_analyze_reads_the_function_it_is_given(runs, capsys):
    _, out, _, _ = runs["json"]
    result = json.loads(out)
    package = result["packages"]["rewritten"]
    assert main(["analyze", package]) == 0
    assert f"ane-rewrite analyze {package}  (function seq_16 of seq_16, seq_32)" in capsys.readouterr().out
    for r in result["lengths"]:
        assert main(["analyze", package, "--function", r["function"], "--json"]) == 0
        analysis = json.loads(capsys.readouterr().out)
        assert {chip: e["latency_ms"] for chip, e in analysis["estimates"].items()} == \
            {chip: e["latency_ms"] for chip, e in r["programs"]["rewritten"]["estimates"].items()}
    assert main(["analyze", package, "--function", "seq_64"]) == 2
    assert "no function 'seq_64'" in capsys.readouterr().err
