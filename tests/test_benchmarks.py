"""benchmarks/compare_zoo.py end to end on a 2-model subset (the full zoo: benchmarks/results)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_benchmark_on_two_models_writes_json_table_and_plots(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import compare_zoo
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    code = compare_zoo.main(["--models", "bert-mini", "convnext-atto", "--out", str(tmp_path), "--runs", "2"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["models"]
    assert [r["model"] for r in rows] == ["bert-mini", "convnext-atto"]
    for r in rows:
        assert "error" not in r and r["equivalent"] and r["psnr_db"] >= 60
        assert r["optimize_s"] > 0 and r["export_baseline_s"] > 0 and r["export_rewritten_s"] > 0
        for side in ("baseline", "rewritten"):
            assert r[side]["cpu_ms"] > 0 and r[side]["ops"] > 0
            assert r[side]["estimates"]["A15"]["latency_ms"] > 0
            assert r[side]["executed"]["fp32"] >= 60 and r[side]["executed"]["fp16"] >= 40
        assert r["rewritten"]["executed"]["fp16"] >= r["baseline"]["executed"]["fp16"] - 1.0
        assert r["rewritten"]["linear"] == 0 < r["baseline"]["linear"]
    bert = rows[0]
    # the default decides: 4 heads of 128 tokens fit the cache batched, so none is lowered, each with its reason
    assert bert["attention_lowered"] == 0 and len(bert["left_batched"]) >= 1
    assert bert["baseline"]["findings"]["batched_attention"] == 8
    table = (tmp_path / "results.md").read_text()
    assert "**Headline**" in table and "| bert-mini | transformers |" in table and "**Executed packages**" in table
    for png in ("ane_latency_estimate.png", "cpu_latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
