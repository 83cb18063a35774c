"""What the command line prints (``cli.py``, ``cli_lengths.py``): its numbered steps, and the
side-by-side tables — a label, the baseline's figure, the rewritten model's."""
from __future__ import annotations

import sys
import time

from . import cost


def step(i: int, n: int, text: str) -> float:
    """``[i/n] text`` on stderr; the time it was printed."""
    print(f"[{i}/{n}] {text}", file=sys.stderr, flush=True)
    return time.perf_counter()


def table(rows: list[tuple[str, str, str]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"  {a:<{w0}}  {b:>{w1}}  {c:>9}" for a, b, c in rows)


def estimate_rows(chip: str, base_ms: float, new_ms: float, band: float, indent: str = "") -> list[tuple]:
    """An estimated latency's row (``indent`` before it), with its band, and the speed-up's row (two
    spaces in): a gain only beyond the band."""
    return [(f"{indent}est. latency {chip} (ms, {cost.band_text(band)})", f"{base_ms:.2f}", f"{new_ms:.2f}"),
            (f"  speed-up {chip} (a gain only above {1 + band:.2f}×)", "-", f"{base_ms / new_ms:.2f}×")]
