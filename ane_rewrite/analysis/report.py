"""analyze(mlmodel or .mlpackage path) → why (parts of) a Core ML program will not run well on
the Neural Engine, read statically from its MIL program (no Mac needed).

The report holds ``findings`` (every op a rule of ``placement.RULES`` flags, with the rule, the
reason, the severity and the rule's source), ``metrics`` (op mix, copies, ranks, dtypes, the
largest intermediate, activation bytes with the last axis padded to 64 bytes, weights) and
``estimates`` (latency and peak memory per chip profile, from ``estimate``: estimates, not
measurements).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from . import estimate as est
from .. import cost
from .. import hardware as hw
from ..errors import InputError
from ..coreml.mil import RESHAPE_FAMILY, load_spec, op_mix, program_inputs, program_ops
from .placement import FLEXIBLE_INPUT, RULES, WEIGHTS_LIMIT, input_findings
from .program import Program, nbytes

SEVERITY_ORDER = ("error", "off_ane", "slow")


@dataclass(frozen=True)
class Finding:
    op: str
    type: str
    rule: str
    severity: str
    reason: str
    consequence: str
    source: str


@dataclass
class Analysis:
    findings: list[Finding]
    metrics: dict
    estimates: dict[str, dict]
    fitted: dict = field(default_factory=lambda: dict(est.FITTED))

    def by_rule(self) -> Counter:
        return Counter(f.rule for f in self.findings)

    def as_dict(self) -> dict:
        return {"findings": [asdict(f) for f in self.findings], "metrics": self.metrics,
                "estimates": self.estimates,
                "estimate_note": (f"analytic estimates, not device measurements; each latency's error: "
                                  f"{cost.band_text()} (band, a fraction: {cost.BAND_SOURCE})"),
                "fitted_parameters": self.fitted}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def __str__(self) -> str:
        return format_analysis(self)


def _findings(prog: Program) -> list[Finding]:
    found = []
    for op in prog.ops:
        if op.type == "const":
            continue
        decompresses = op.type.startswith("constexpr")  # a weight: only the rules naming it apply
        for rule in RULES:
            if (rule.ops and op.type not in rule.ops) or (decompresses and not rule.ops):
                continue
            reason = rule.check(op, prog)
            if reason:
                found.append(Finding(op.name, op.type, rule.id, rule.severity, reason, rule.consequence,
                                     rule.source))
    for v, reason in input_findings(prog.inputs):
        r = FLEXIBLE_INPUT
        found.append(Finding(v.name, "input", r.id, r.severity, reason, r.consequence, r.source))
    weights = prog.weight_bytes
    if weights > hw.MAX_WEIGHTS_BYTES:
        r = WEIGHTS_LIMIT
        found.append(Finding("<model>", "model", r.id, r.severity, f"weights {weights / 1e9:.2f} GB",
                             r.consequence, r.source))
    return sorted(found, key=lambda f: SEVERITY_ORDER.index(f.severity))


def _metrics(prog: Program) -> dict:
    ops = [op for op in prog.ops if not op.type.startswith("const")]
    mix = op_mix(prog.ops)
    values = [o for op in ops for o in op.outputs]
    largest = max(values, key=nbytes, default=None)
    peak, at = prog.peak_activations
    return {
        "ops": len(ops),
        "op_mix": dict(mix.most_common()),
        "copies": {"transpose": mix["transpose"], "reshape_family": sum(mix[t] for t in RESHAPE_FAMILY)},
        "ranks": {str(r): n for r, n in sorted(Counter(v.rank for v in values).items())},
        "dtypes": dict(Counter(v.dtype for v in values).most_common()),
        "largest_tensor": None if largest is None else {
            "name": largest.name, "shape": list(largest.shape), "bytes": nbytes(largest),
            "bytes_padded": nbytes(largest, padded=True)},
        "activation_bytes": sum(nbytes(v) for v in values),
        "activation_bytes_padded": sum(nbytes(v, padded=True) for v in values),
        "peak_live_activation_bytes": peak,
        "peak_at_op": prog.ops[at].name if prog.ops else None,
        "weight_bytes": prog.weight_bytes,
    }


def load_program(model, function: str | None = None) -> Program:
    """The MIL program of an MLModel, its spec, or a saved .mlpackage / .mlmodel path."""
    try:
        spec = load_spec(model)
    except Exception as e:  # noqa: BLE001 - re-raised with the cause named
        raise InputError(f"cannot read a Core ML model from {model!r}: {e}") from e
    if spec.WhichOneof("Type") != "mlProgram":
        raise InputError("not an ML Program (neuralnetwork models have no MIL program to analyze); "
                         "export with convert_to='mlprogram'")
    return Program(program_ops(spec, function), program_inputs(spec, function))


def placed_works(prog: Program, findings: list[Finding] | None = None) -> list:
    """The program as the latency model's work (``estimate.works``), with what the placement
    rules flagged: off the ANE, channels-last projections, work the ANE cannot split."""
    findings = _findings(prog) if findings is None else findings
    off_ane = {f.op for f in findings if f.severity == "off_ane"}
    channels_last = {f.op for f in findings if f.rule == "channels_last_linear"}
    unsplit = {f.op for f in findings if f.rule in est.UNSPLIT_RULES}
    return est.works(prog, off_ane, channels_last, unsplit)


def analyze(model, profiles: tuple[str, ...] | None = None, fitted: dict | None = None,
            function: str | None = None) -> Analysis:
    """``model``: an MLModel, its spec, or the path of a saved .mlpackage / .mlmodel;
    ``profiles``: chip names of ``hardware.CHIPS`` (``hardware.DEFAULT_CHIPS`` by default);
    ``fitted``: trial values of the latency model's fitted parameters; ``function``: the
    function of a multifunction program (its default one unless named)."""
    prog = load_program(model, function)
    findings = _findings(prog)
    works = placed_works(prog, findings)
    names = profiles or hw.DEFAULT_CHIPS
    unknown = [n for n in names if n not in hw.CHIPS]
    if unknown:
        raise InputError(f"unknown chip profile(s) {unknown}; known: {list(hw.CHIPS)}")
    fitted = {**est.FITTED, **(fitted or {})}
    estimates = {e.chip: e.as_dict() for e in est.estimate_works(prog, works, [hw.CHIPS[n] for n in names], fitted)}
    return Analysis(findings, _metrics(prog), estimates, fitted)


def format_analysis(a: Analysis, max_per_rule: int = 3) -> str:
    lines = [f"findings: {len(a.findings)}"]
    for rule, n in a.by_rule().most_common():
        first = [f for f in a.findings if f.rule == rule]
        lines.append(f"  [{first[0].severity}] {rule} × {n}: {first[0].consequence} ({first[0].source})")
        for f in first[:max_per_rule]:
            lines.append(f"      {f.op} ({f.type}): {f.reason}")
        if n > max_per_rule:
            lines.append(f"      … {n - max_per_rule} more")
    m = a.metrics
    lines.append(f"ops {m['ops']}, transposes {m['copies']['transpose']}, reshape family "
                 f"{m['copies']['reshape_family']}, ranks {m['ranks']}, dtypes {m['dtypes']}")
    if m["largest_tensor"]:
        t = m["largest_tensor"]
        lines.append(f"largest tensor {t['name']} {t['shape']} {t['bytes'] / 2**20:.2f} MiB; activations "
                     f"{m['activation_bytes_padded'] / 2**20:.1f} MiB padded; peak live "
                     f"{m['peak_live_activation_bytes'] / 2**20:.2f} MiB; weights {m['weight_bytes'] / 2**20:.1f} MiB")
    lines.append(f"estimates (analytic, not measured: {cost.band_text()}; fitted on published "
                 "measurements: " + ", ".join(f"{k} = {v:g}" for k, v in a.fitted.items()) + "):")
    for chip, e in a.estimates.items():
        lines.append(f"  {chip}: latency {e['latency_ms']:.2f} ms {cost.band_text(e['band'])} "
                     f"({e['off_ane_ops']} ops off the ANE: "
                     f"{e['off_ane_ms']:.2f} ms), peak memory {e['peak_memory_mib']:.1f} MiB")
    return "\n".join(lines)
