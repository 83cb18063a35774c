"""ane_rewrite/bench.py and `ane-rewrite bench`: everything around the Core ML timing loop, which
needs macOS — the refusal elsewhere, the loop on a stand-in clock, the inputs, the dataset row."""
import csv
from datetime import date
from itertools import count
from pathlib import Path

import pytest

from ane_rewrite import bench, cli
from ane_rewrite.coreml.mil import MilValue
from ane_rewrite.errors import InputError

DATASET = Path(__file__).resolve().parent.parent / "benchmarks" / "published" / "latency.csv"
INPUTS = [MilValue("input_ids", "INT32", (1, 128)), MilValue("pixels", "FLOAT16", (1, 3, 8, 8))]


def test_off_macos_bench_exits_2_saying_it_needs_macos(capsys, tmp_path):
    assert cli.main(["bench", str(tmp_path / "missing.mlpackage")]) == 2
    err = capsys.readouterr().err
    assert "needs macOS" in err and "ane-rewrite analyze" in err
    with pytest.raises(bench.NeedsMacOS):
        bench.require_macos("Linux")
    bench.require_macos("Darwin")  # no error there


def test_measure_warms_up_then_times_each_run():
    calls, ticks = [], count()
    times = bench.measure(lambda: calls.append(1), runs=3, warmup=2, clock=lambda: next(ticks) * 0.004)
    assert len(calls) == 5 and times == pytest.approx([4.0, 4.0, 4.0])
    with pytest.raises(InputError):
        bench.measure(lambda: None, runs=0, warmup=1)


def test_inputs_follow_the_program_and_flexible_shapes_are_refused():
    feed = bench.draw_inputs(INPUTS)
    assert feed["input_ids"].shape == (1, 128) and feed["input_ids"].dtype.name == "int32"
    assert feed["pixels"].shape == (1, 3, 8, 8) and feed["pixels"].dtype.name == "float16"
    with pytest.raises(InputError, match="flexible"):
        bench.draw_inputs([MilValue("x", "FLOAT32", (1, -1))])


def test_a_row_in_the_dataset_format_appended_to_it(tmp_path):
    r = bench.row("/x/vit.mlpackage", [3.0, 1.0, 2.0], INPUTS, chip="M1 Pro", device="MacBookPro18,1", warmup=5,
                  family="vit", rebuild="timm:vit_tiny_patch16_224", placement={"NeuralEngine": 90, "CPU": 2},
                  today=date(2026, 12, 7))
    assert tuple(r) == bench.COLUMNS
    assert r["latency_ms"] == "2" and r["statistic"] == "median of 3 after 5 warm-up" and r["scored"] == "yes"
    assert r["id"] == "vit_m1_pro" and r["input_shape"] == "input_ids:1x128;pixels:1x3x8x8"
    assert "CPU 2, NeuralEngine 90" in r["notes"] and r["source"] == "ane-rewrite bench, 2026-12-07"
    unscored = bench.row("/x/vit.mlpackage", [1.0], INPUTS, chip="M1", device="Mac", warmup=0)
    assert unscored["scored"] == "no" and "--rebuild" in unscored["why_not_scored"]
    path = tmp_path / "mine.csv"
    bench.append(r, path)
    bench.append(unscored, path)
    rows = list(csv.DictReader(open(path)))
    assert [x["id"] for x in rows] == ["vit_m1_pro", "vit_m1"]
    with pytest.raises(InputError, match="not a latency dataset"):
        (tmp_path / "other.csv").write_text("a,b\n1,2\n")
        bench.append(r, tmp_path / "other.csv")
    with pytest.raises(InputError, match="family"):
        bench.row("/x/v.mlpackage", [1.0], INPUTS, chip="M1", device="Mac", warmup=0, family="gan")


def test_the_published_dataset_has_the_rows_bench_writes():
    with open(DATASET, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench.COLUMNS
        rows = list(reader)
    assert all(r["family"] in bench.FAMILIES and r["source"] for r in rows)
    assert all(r["why_not_scored"] for r in rows if r["scored"] == "no")
