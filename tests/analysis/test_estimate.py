"""ane_rewrite/analysis/estimate.py: flops, per-op time on and off the ANE, the program estimate."""
import pytest

from ane_rewrite import cost
from ane_rewrite import hardware as hw
from ane_rewrite.analysis import estimate as est
from tests.analysis.programs import P


def _conv_program(channels=64, seq=128):
    p = P(inputs=(("x", (1, channels, 1, seq)),))
    w = p.const("w", shape=(channels, channels, 1, 1), dtype="FLOAT16")
    out = p.op("conv", (1, channels, 1, seq), x="x", weight=w)
    return p, out


def test_conv_flops_are_two_per_multiply_add():
    p, _ = _conv_program(64, 128)
    conv = p.ops[-1]
    assert est.flops(conv, p.program()) == 2.0 * (64 * 128) * 64


def test_matmul_flops_and_a_matmul_whose_operands_are_unknown():
    p = P(inputs=(("a", (1, 4, 8, 16)), ("b", (1, 4, 16, 32))))
    p.op("matmul", (1, 4, 8, 32), x="a", y="b")
    assert est.flops(p.ops[-1], p.program()) == 2.0 * (4 * 8 * 32) * 16
    q = P(inputs=())
    q.op("matmul", (1, 4, 8, 32), x="missing", y="missing")  # the guard: no operand, no shape read
    assert est.flops(q.ops[-1], q.program()) == 4 * 8 * 32


def test_an_op_off_the_ane_runs_at_the_cpu_rate_and_the_ane_one_pays_its_overhead():
    p, _ = _conv_program()
    conv, prog, chip = p.ops[-1], p.program(), hw.CHIPS["A15"]
    on = est.op_time_us(conv, prog, chip, off_ane=False, channels_last=False)
    off = est.op_time_us(conv, prog, chip, off_ane=True, channels_last=False)
    assert off > on > est.FITTED["compute_op_us"]
    act, weights = 64 * 128 * 2 * 2, 64 * 64 * 2
    assert off == pytest.approx(est.flops(conv, prog) / (est.FITTED["cpu_gflops"] * 1e3)
                                + (act + weights) / (chip.dram_gbps * 1e3) + act / (est.FITTED["transfer_gbps"] * 1e3))


def test_channels_last_projections_move_their_activations_again():
    p, _ = _conv_program(16, 4096)  # small enough to be bound by bytes, not compute
    conv, prog, chip = p.ops[-1], p.program(), hw.CHIPS["A15"]
    native = est.op_time_us(conv, prog, chip, False, False) - est.FITTED["compute_op_us"]
    slow = est.op_time_us(conv, prog, chip, False, True) - est.FITTED["compute_op_us"]
    act, weights = est.work(conv, prog).act_bytes, est.work(conv, prog).weight_bytes
    bw = est.FITTED["onchip_gbps_per_tops"] * chip.ane_tops * 1e3
    dram = cost.ane_dram_bytes_per_us(chip, est.FITTED)
    assert native == pytest.approx(act / bw + weights / dram)
    assert slow == pytest.approx(act * (1 + est.FITTED["channels_last_copies"]) / bw + weights / dram)
    big, _ = _conv_program(512, 512)  # bound by compute: the layout costs nothing more there
    conv, prog = big.ops[-1], big.program()
    assert est.op_time_us(conv, prog, chip, False, True) == est.op_time_us(conv, prog, chip, False, False)


def test_the_program_estimate_adds_the_inference_cost_and_counts_memory():
    p, out = _conv_program()
    prog = p.program()
    e = est.estimate(prog, off_ane=set(), channels_last=set(), chip=hw.CHIPS["M1"])
    assert e.latency_ms == pytest.approx(est.FITTED["inference_us"] / 1e3 + e.ane_ms + e.off_ane_ms)
    assert e.off_ane_ops == 0 and e.off_ane_ms == 0 and e.band == cost.BAND
    assert e.weights_mib == pytest.approx(64 * 64 * 2 / 2**20)
    assert e.peak_memory_mib == pytest.approx(e.weights_mib + e.peak_activation_mib)
    off = est.estimate(prog, off_ane={out}, channels_last=set(), chip=hw.CHIPS["M1"])
    assert off.off_ane_ops == 1 and off.latency_ms > e.latency_ms


def test_work_the_ane_cannot_split_moves_its_activations_again():
    p, out = _conv_program(16, 4096)  # bound by bytes: the extra moves show
    conv, prog, chip = p.ops[-1], p.program(), hw.CHIPS["A15"]
    split = est.op_time_us(conv, prog, chip, False, False) - est.FITTED["compute_op_us"]
    unsplit = est.op_time_us(conv, prog, chip, False, False, unsplit=True) - est.FITTED["compute_op_us"]
    act = est.work(conv, prog).act_bytes
    bw = est.FITTED["onchip_gbps_per_tops"] * chip.ane_tops * 1e3
    assert unsplit - split == pytest.approx(act * est.FITTED["unsplit_copies"] / bw, rel=1e-6)
    whole = est.estimate(prog, set(), set(), chip, unsplit={out})
    assert whole.latency_ms > est.estimate(prog, set(), set(), chip).latency_ms
    assert set(est.UNSPLIT_RULES) == {"batched_attention", "softmax_axis"}


def test_a_reshape_that_keeps_the_last_axis_is_free_and_one_that_moves_it_is_a_copy():
    p = P(inputs=(("x", (1, 64, 1, 128)),))
    keep = p.op("reshape", (1, 64, 128), x="x")
    move = p.op("reshape", (1, 64, 128, 1), x="x")
    prog = p.program()
    kinds = [est.work(op, prog).kind for op in prog.ops if op.outputs[0].name in (keep, move)]
    assert kinds == ["view", "other"]
    assert est.op_time_us(prog.ops[-2], prog, hw.CHIPS["A15"], False, False) == 0.0
