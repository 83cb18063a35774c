"""ane_rewrite/cost.py: the one latency model — an op's time from its work, a program's from its
ops and switches, the fitted parameters with their priors, the held-out band and what a gain is."""
import json
from pathlib import Path

import numpy as np
import pytest

from ane_rewrite import cost
from ane_rewrite.hardware import CHIPS

A14 = CHIPS["A14"]
FIT_JSON = Path(__file__).resolve().parent.parent / "benchmarks" / "published" / "fit.json"


def test_compute_is_bound_by_the_larger_of_its_flops_and_its_bytes():
    big = cost.Work("compute", flops=1e10, act_bytes=1000, weight_bytes=10)
    assert cost.ane_time_us(big, A14) == pytest.approx(
        cost.FIT["compute_op_us"] + 1e10 / (A14.ane_tops * 1e6 * cost.FIT["conv_efficiency"]))
    wide = cost.Work("compute", flops=10.0, act_bytes=10, weight_bytes=50_000_000)
    dram = cost.ane_dram_bytes_per_us(A14)
    assert cost.ane_time_us(wide, A14) == pytest.approx(cost.FIT["compute_op_us"] + (10 / (cost.FIT["onchip_gbps_per_tops"] * A14.ane_tops * 1e3) + 50_000_000 / dram))


def test_a_product_of_two_activations_runs_at_its_own_efficiency():
    product = cost.Work("compute", flops=1e10, act_bytes=1000)
    assert cost.ane_time_us(product, A14) - cost.FIT["compute_op_us"] == pytest.approx(
        1e10 / (A14.ane_tops * 1e6 * cost.FIT["product_efficiency"]))


def test_activations_past_the_cache_move_at_dram_speed():
    limit = int(A14.cache_mib * 2**20)
    inside, outside = (cost.ane_time_us(cost.Work("other", act_bytes=n), A14) for n in (limit, limit + 64))
    assert outside - cost.FIT["other_op_us"] == pytest.approx((limit + 64) / cost.ane_dram_bytes_per_us(A14))
    assert inside < outside


def test_the_ane_reaches_dram_at_the_chip_bandwidth_or_its_own_port_whichever_is_less():
    slow, wide = CHIPS["A14"], CHIPS["M1 Pro"]  # 34.1 and 204.8 GB/s of DRAM
    fit = dict(cost.FIT, ane_dram_gbps=50.0, dram_efficiency=1.0)
    assert cost.ane_dram_bytes_per_us(slow, fit) == pytest.approx(34.1e3)
    assert cost.ane_dram_bytes_per_us(wide, fit) == pytest.approx(50.0e3)
    big = cost.Work("other", act_bytes=10**9)
    assert cost.ane_time_us(big, wide, fit) == pytest.approx(fit["other_op_us"] + 1e9 / 50.0e3)
    # an op off the ANE reads the DRAM through the SoC's buses, not the ANE's port
    assert cost.cpu_time_us(cost.Work("other", act_bytes=10**9, off_ane=True), wide, fit) < cost.cpu_time_us(
        cost.Work("other", act_bytes=10**9, off_ane=True), slow, fit)


def test_work_the_ane_cannot_split_moves_its_tensor_again():
    split = cost.Work("other", act_bytes=10**6)
    whole = cost.Work("other", act_bytes=10**6, unsplit=True)
    bw = cost.FIT["onchip_gbps_per_tops"] * A14.ane_tops * 1e3
    assert cost.ane_time_us(whole, A14) - cost.ane_time_us(split, A14) == pytest.approx(10**6 * cost.FIT["unsplit_copies"] / bw)


def test_views_are_free_and_drop_out_of_the_program():
    assert cost.ane_time_us(cost.Work("view", act_bytes=10**9), A14) == 0.0
    works = [cost.Work("other", act_bytes=100), cost.Work("view"), cost.Work("other", act_bytes=100)]
    assert len(cost.as_arrays(works)["kind"]) == 2


def test_a_program_pays_once_per_prediction_and_once_per_switch():
    ane = cost.Work("other", act_bytes=1000)
    cpu = cost.Work("other", flops=1e6, act_bytes=1000, off_ane=True)
    total, on, off = cost.latency_us([cpu, ane, cost.Work("view", off_ane=True), ane, cpu, ane], A14)
    assert cost.switches([cpu, ane, ane, cpu, ane]) == 3
    assert on == pytest.approx(3 * cost.ane_time_us(ane, A14))
    assert off == pytest.approx(2 * cost.cpu_time_us(cpu, A14) + 3 * cost.FIT["switch_us"])
    assert total == pytest.approx(cost.FIT["inference_us"] + on + off)


def test_the_array_form_is_the_scalar_form():
    rng = np.random.default_rng(0)
    works = [cost.Work(cost.KINDS[k % 2], float(f), int(a), int(w) * (k % 3 == 0), bool(k % 5 == 0), bool(k % 4 == 0), bool(k % 7 == 0))
             for k, (f, a, w) in enumerate(zip(rng.uniform(0, 1e9, 50), rng.integers(0, 2**23, 50), rng.integers(0, 2**22, 50)))]
    on = sum(cost.ane_time_us(w, A14) for w in works if not w.off_ane)
    assert cost.latency_us(works, A14)[1] == pytest.approx(on)


def test_every_fitted_parameter_has_a_prior_and_fit_json_holds_the_parameters_in_use():
    assert set(cost.FIT) == set(cost.PRIOR)
    assert all(v > 0 for v in cost.FIT.values())
    fitted = json.loads(FIT_JSON.read_text())
    assert fitted["fit"] == cost.FIT and fitted["band"] == cost.BAND
    assert 0 < cost.BAND < 1


def test_a_gain_is_a_speedup_beyond_the_band():
    assert cost.is_gain(1.0 + cost.BAND + 0.01) and not cost.is_gain(1.0 + cost.BAND)
    assert cost.band_text(0.3) == "±30 % held-out"
    assert cost.speedup_text(3.0, 1.0, 0.3) == "3.00×, a gain"
    assert cost.speedup_text(1.2, 1.0, 0.3) == "1.20×, within the error band"
    assert cost.speedup_text(1.0, 2.0, 0.3) == "0.50×, slower beyond the band"
