"""Assertions shared by the tests."""
from __future__ import annotations

import torch

from ane_rewrite.frontend.capture import capture
from ane_rewrite.rewrite.graph import op_counts


def captured(module: torch.nn.Module, example):
    """The module captured as the passes see it."""
    return capture(module, example)


def count(gm, name: str) -> int:
    return op_counts(gm).get(name, 0)


def outputs(gm, example):
    with torch.no_grad():
        return gm(*example) if isinstance(example, tuple) else gm(**example)


def doc_anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text: lower case, punctuation dropped, spaces as hyphens."""
    import re

    heads = re.findall(r"^#+\s+(.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


def exported_pair(folder, seq_len: int = 16):
    """The test DistilBERT and its rewrite at ``seq_len``, exported into ``folder`` as
    ``baseline.mlpackage`` and ``rewritten.mlpackage``."""
    import ane_rewrite
    from tests.zoo import distilbert

    model, _ = distilbert()
    fast = ane_rewrite.optimize(model, seq_len=seq_len)
    ane_rewrite.export(model, fast.example_inputs, folder / "baseline.mlpackage", progress=False)
    ane_rewrite.export(fast, fast.example_inputs, folder / "rewritten.mlpackage", progress=False)
    return model, fast
