"""ane-rewrite bench PKG: a saved package timed by Core ML on a Mac, as a row of the published
latency dataset (``benchmarks/published/latency.csv``), so that users with a Mac add the device
measurements the latency model is scored on.

    predictions: Core ML, compute units CPU_AND_NE, ``warmup`` untimed, then ``runs`` timed;
                 the statistic is their median
    placement:   the device of each op from MLComputePlan where the OS has it (macOS 14.4+)
    row:         the dataset's columns (``COLUMNS``), printed as CSV or appended to a file

Core ML runs only on macOS: elsewhere ``bench`` is an error naming that (exit 2), before
anything is loaded. The timing loop is ``measure``; everything around it (inputs, the row,
the file) is plain code tested on Linux.
"""
from __future__ import annotations

import csv
import io
import platform
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Callable

from .errors import InputError

COLUMNS = ("id", "model", "family", "form", "pair", "rebuild", "rewrite", "input_shape", "batch", "weight_bits", "conversion",
           "device", "chip", "compute_units", "harness", "statistic", "latency_ms", "source", "scored",
           "why_not_scored", "notes")
FAMILIES = ("cnn", "hybrid", "vit", "text_encoder", "decoder", "diffusion_unet", "speech_encoder", "unknown")


class NeedsMacOS(InputError):
    """bench asked for on a system without Core ML's runtime."""


def require_macos(system: str | None = None) -> None:
    system = system or platform.system()
    if system != "Darwin":
        raise NeedsMacOS(f"ane-rewrite bench needs macOS: Core ML times the package on the device, and this is "
                         f"{system}. Run it on a Mac (Apple silicon), or estimate here with `ane-rewrite analyze`.")


def measure(predict: Callable[[], object], runs: int, warmup: int,
            clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds of ``runs`` calls of ``predict`` after ``warmup`` untimed ones."""
    if runs < 1 or warmup < 0:
        raise InputError(f"bench needs runs ≥ 1 and warmup ≥ 0 (got runs {runs}, warmup {warmup})")
    for _ in range(warmup):
        predict()
    times = []
    for _ in range(runs):
        start = clock()
        predict()
        times.append((clock() - start) * 1e3)
    return times


def draw_inputs(inputs) -> dict:
    """One input per program input (``coreml.mil.program_inputs``): Gaussian floats, token ids 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for v in inputs:
        if any(d < 0 for d in v.shape):
            raise InputError(f"input {v.name} {list(v.shape)} has a flexible dimension: bench times static shapes")
        if v.dtype.startswith("INT"):
            out[v.name] = np.zeros(v.shape, dtype=np.int32)
        else:
            out[v.name] = rng.standard_normal(v.shape).astype(np.float16 if v.dtype == "FLOAT16" else np.float32)
    return out


def row(path: str | Path, times_ms: list[float], inputs, *, chip: str, device: str, warmup: int,
        model: str | None = None, family: str = "unknown", form: str = "as_is", rebuild: str = "",
        placement: dict[str, int] | None = None, today: date | None = None) -> dict:
    """The dataset row of one measurement."""
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    if form not in ("as_is", "ane_optimized"):
        raise InputError(f"unknown form {form!r}; as_is or ane_optimized")
    name = model or Path(path).stem
    shapes = ";".join(f"{v.name}:{'x'.join(map(str, v.shape))}" for v in inputs)
    on = "" if not placement else "; ops by device (MLComputePlan): " + ", ".join(f"{k} {n}" for k, n in sorted(placement.items()))
    return {
        "id": f"{name}_{chip}".lower().replace(" ", "_"), "model": name, "family": family, "form": form, "pair": "",
        "rebuild": rebuild or "none", "rewrite": "", "input_shape": shapes, "batch": str(inputs[0].shape[0]) if inputs and inputs[0].shape else "1",
        "weight_bits": "16", "conversion": f"the saved package {Path(path).name}", "device": device, "chip": chip,
        "compute_units": "CPU_AND_NE", "harness": "ane-rewrite bench (coremltools predict)",
        "statistic": f"median of {len(times_ms)} after {warmup} warm-up", "latency_ms": f"{statistics.median(times_ms):.4g}",
        "source": f"ane-rewrite bench, {(today or date.today()).isoformat()}", "scored": "yes" if rebuild else "no",
        "why_not_scored": "" if rebuild else "no rebuild given (--rebuild): the dataset cannot rebuild its graph",
        "notes": f"min {min(times_ms):.4g} ms, max {max(times_ms):.4g} ms{on}",
    }


def as_csv(r: dict, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerow(r)
    return buf.getvalue()


def append(r: dict, path: str | Path) -> None:
    """Append the row to a dataset file (its header written when the file is new); a file whose
    header is not the dataset's is an error."""
    path = Path(path)
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as f:
            head = next(csv.reader(f), [])
        if tuple(head) != COLUMNS:
            raise InputError(f"{path} is not a latency dataset (its header is not {','.join(COLUMNS)})")
        with open(path, "a", newline="") as f:
            f.write(as_csv(r, header=False))
    else:
        path.write_text(as_csv(r, header=True))


def _mac_chip() -> tuple[str, str]:
    """(chip, device) of this Mac: 'Apple M1 Pro' → 'M1 Pro'."""
    brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout.strip()
    model = subprocess.run(["sysctl", "-n", "hw.model"], capture_output=True, text=True).stdout.strip()
    return brand.removeprefix("Apple ").strip() or "unknown", model or "Mac"


def _placement(path, compute_units, function: str | None) -> dict[str, int] | None:
    """Ops per device of the compiled program, from MLComputePlan (None where the OS lacks it)."""
    try:
        from coremltools.models.compute_plan import MLComputePlan

        plan = MLComputePlan.load_from_path(path=str(path), compute_units=compute_units)
        program = plan.model_structure.program
        fn = program.functions[function or next(iter(program.functions))]
        counts: dict[str, int] = {}
        for op in fn.block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is not None:
                name = type(usage.preferred_compute_device).__name__.removeprefix("MLComputeDevice").removesuffix("ComputeDevice")
                counts[name] = counts.get(name, 0) + 1
        return counts
    except Exception:  # noqa: BLE001 - an OS without compute plans still gets its timing
        return None


def bench(path: str | Path, runs: int = 50, warmup: int = 5, function: str | None = None, **row_options) -> dict:
    """Time a saved package with Core ML on this Mac; the dataset row (``row``)."""
    require_macos()
    import coremltools as ct

    from .coreml.mil import program_inputs

    inputs = program_inputs(str(path), function)
    feed = draw_inputs(inputs)
    units = ct.ComputeUnit.CPU_AND_NE
    model = ct.models.MLModel(str(path), compute_units=units, **({"function_name": function} if function else {}))
    times = measure(lambda: model.predict(feed), runs, warmup)
    chip, device = _mac_chip()
    return row(path, times, inputs, chip=row_options.pop("chip", None) or chip, device=device, warmup=warmup,
               placement=_placement(path, units, function), **row_options)


def add_parser(sub):
    """The ``bench`` subcommand of the CLI."""
    ben = sub.add_parser("bench", help="time a package with Core ML on a Mac: a row of the published latency dataset")
    ben.add_argument("path", help="a .mlpackage (ML Program)")
    ben.add_argument("--runs", type=int, default=50, help="timed predictions; the median is reported (50)")
    ben.add_argument("--warmup", type=int, default=5, help="untimed predictions first (5)")
    ben.add_argument("--function", help="the function of a multifunction package (its default one)")
    ben.add_argument("--append", metavar="CSV", help="append the row to this dataset file (else print it)")
    ben.add_argument("--model", help="the row's model name (default: the package's name)")
    ben.add_argument("--family", default="unknown", help=", ".join(FAMILIES))
    ben.add_argument("--form", default="as_is", choices=("as_is", "ane_optimized"))
    ben.add_argument("--rebuild", help="how the dataset rebuilds the graph (timm:NAME, hf:CLASS:CONFIG, …): the row is scored")
    ben.add_argument("--chip", help="the chip's profile name (default: read from the Mac)")
    return ben


def run(args) -> int:
    """``ane-rewrite bench``: the row printed as CSV, or appended to ``--append``."""
    require_macos()  # before anything is loaded
    r = bench(args.path, args.runs, args.warmup, args.function, chip=args.chip, model=args.model,
              family=args.family, form=args.form, rebuild=args.rebuild or "")
    if args.append:
        append(r, args.append)
        print(f"{r['id']}: {r['latency_ms']} ms ({r['statistic']}) appended to {args.append}")
    else:
        print(as_csv(r, header=True), end="")
    return 0
