"""ane_rewrite/hardware.py: every fact has a source in docs/ane.md; the byte rules."""
import ast
from pathlib import Path

from ane_rewrite import hardware as hw
from tests.helpers import doc_anchors

ROOT = Path(__file__).resolve().parents[1]


def test_every_fact_cites_a_section_of_the_ane_document():
    anchors = doc_anchors((ROOT / hw.DOC).read_text())
    facts = [name for name in vars(hw) if name.isupper() and name not in ("DOC", "SOURCES")]
    assert sorted(facts) == sorted(hw.SOURCES)
    for fact in facts:
        cited = hw.source(fact)
        assert cited.startswith(hw.DOC + "#"), fact
        assert cited[len(hw.DOC) + 1:].split()[0].rstrip(",") in anchors, (fact, cited)


def test_the_module_imports_nothing_of_ane_rewrite():
    tree = ast.parse((ROOT / "ane_rewrite" / "hardware.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and ("ane_rewrite" in m or m.startswith("."))]


def test_padded_bytes_round_the_last_axis_up_to_64():
    assert hw.shape_bytes((2, 3)) == 12
    assert hw.shape_bytes((2, 3), padded=True) == 2 * 64
    assert hw.shape_bytes((4, 32), padded=True) == hw.shape_bytes((4, 32)) == 4 * 64
    assert hw.shape_bytes((), itemsize=4) == 4
    assert hw.ALIGNED_LAST_AXIS * hw.COMPUTE_BYTES == hw.LAST_AXIS_ALIGN_BYTES


def test_a_copy_is_what_moves_or_resizes_the_last_axis():
    assert hw.touches_last_axis((2, 3, 4), (2, 4, 3), [0, 2, 1])
    assert not hw.touches_last_axis((2, 3, 4), (3, 2, 4), [1, 0, 2])
    assert not hw.touches_last_axis((2, 3, 4), (6, 4))
    assert hw.touches_last_axis((2, 3, 4), (2, 12))


def test_chip_profiles():
    assert hw.CALIBRATION_CHIP in hw.CHIPS
    for chip in hw.CHIPS.values():
        assert chip.ane_tops > 0 and chip.dram_gbps > 0 and chip.cache_mib == hw.ON_CHIP_CACHE_MIB
