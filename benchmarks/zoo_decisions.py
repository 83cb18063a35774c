"""What the latency model decided differently in a zoo run (``compare_zoo.py``) than in the previous one."""
from __future__ import annotations


def decisions_changed(rows: list[dict], previous: list[dict]) -> list[str]:
    """Per model, what the latency model decided differently from the previous run: attentions
    lowered per head, and those left batched because per head would not pay."""
    before = {r["model"]: r for r in previous if "error" not in r}
    lines = []
    for r in rows:
        old = before.get(r["model"])
        if "error" in r or old is None:
            continue
        changes = []
        if r["attention_lowered"] != old.get("attention_lowered"):
            changes.append(f"attentions lowered per head {old.get('attention_lowered')} → {r['attention_lowered']}")
        if "left_batched" in old and len(r["left_batched"]) != len(old["left_batched"]):
            changes.append(f"left batched for cost {len(old['left_batched'])} → {len(r['left_batched'])}")
        if r["rewritten"]["ops"] != old["rewritten"]["ops"]:
            changes.append(f"rewritten ops {old['rewritten']['ops']} → {r['rewritten']['ops']}")
        if changes:
            lines.append(f"- {r['model']}: " + "; ".join(changes))
    return lines
