"""Mixture-of-experts blocks in forms that convert: the routing made static.

Glossary: T tokens (batch × sequence, flattened by the MoE block), H hidden, E experts, K experts
per token, O an expert's first projection's width (2·I with a gate, I without), I its intermediate width.

Hugging Face MoE models (transformers ≥ 5) run their experts through ``ExpertsInterface``; the
implementation is a config choice (``config._experts_implementation``), the routing their own:

    grouped_mm (the default):  histc(ids) → sort → grouped matmul over the tokens of each expert
    eager:                     a loop over the experts hit: nonzero(mask) → index_add
        (both data-dependent: the number of tokens per expert is known only at run time, and no
        converter takes histc, nonzero or a grouped matmul)
    batched_mm:                W[ids_S] gathered per (token, k) pair → bmm   (S = T·K; static)

``static_experts`` captures a model with ``batched_mm`` — transformers' own static form: the model
as it is, exported, and the reference ``verify`` compares against. ``dense_experts`` is what
``optimize`` captures: every expert evaluated on every token, its routing weight a mask, the
experts' weights viewed as one projection each, so there is no gather and the layout pass turns
both into 1×1 convs:

    gates_TE = Σ_k w_TK · [ids_TK = e]                     (a comparison with arange: no one_hot, no scatter)
    up_TEO   = linear(x_1TH, W_up viewed (E·O, H)).view(1, T, E, O)
    h_TEI    = gate(up_TEO)                                (the model's own activation / gating)
    y_TH     = linear(h_TEI.view(1, T, E·I) · linear(gates_1TE, one-hot (E·I, E)), W_down viewed (H, E·I))
               + linear(gates_1TE, b_down_EHᵀ)         (the gates' products, not broadcasts: on the channels-first
                                                       tokens only the gates' E channels turn, not E·I or H)

The work is E/K times the routed work (all experts run), and every expert's weights are read —
as they are by any static form on the ANE, which has no gather of weights. Parameters keep their
names and shapes: the views are in the graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

DENSE = "ane_dense"
_STATIC = ("batched_mm", DENSE)


def experts_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The expert collections that transformers' ``ExpertsInterface`` dispatches (its decorator
    gives them ``_apply_gate`` and ``has_gate``); none in what is not a module (named by capture)."""
    if not isinstance(model, torch.nn.Module):
        return []
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "_apply_gate") and hasattr(m, "has_gate") and hasattr(m, "num_experts")]


def _set(found: list[tuple[str, torch.nn.Module]], name: str) -> None:
    """The experts implementation ``name`` in the config of every collection ``found``."""
    for _, module in found:
        if getattr(module, "config", None) is not None:
            module.config._experts_implementation = name


def static_experts(model: torch.nn.Module) -> None:
    """In place (a copy): experts dispatched by transformers run ``batched_mm`` unless already
    static. A model without such experts is left as it is."""
    found = experts_modules(model)
    if any(getattr(m.config, "_experts_implementation", None) not in _STATIC for _, m in found):
        _set(found, "batched_mm")


def dense_experts(model: torch.nn.Module) -> None:
    """In place (a copy): every ``ExpertsInterface`` collection evaluated densely (module docstring)."""
    found = experts_modules(model)
    if not found:
        return
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    for name, module in found:
        if getattr(module, "_is_expert_parallel", False):
            raise InputError(f"{name}: expert-parallel experts cannot be evaluated densely on one device")
    ALL_EXPERTS_FUNCTIONS.register(DENSE, dense_experts_forward)
    _set(found, DENSE)


def _projection(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """An (E, O, I) stack of expert weights — (E, I, O) when ``transposed`` — as one (E·O, I) weight."""
    w_EOI = weight.transpose(1, 2) if transposed else weight
    experts, out_ch, in_ch = w_EOI.shape
    return w_EOI.reshape(experts * out_ch, in_ch)


def _merged_down(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The down projections (E, H, I) — (E, I, H) when ``transposed`` — as one (H, E·I) weight that
    sums the experts' outputs."""
    w_EIH = weight if transposed else weight.transpose(1, 2)
    experts, inner, hidden = w_EIH.shape
    return w_EIH.reshape(experts * inner, hidden).transpose(0, 1)


def dense_experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                          top_k_weights: torch.Tensor) -> torch.Tensor:
    """The experts of ``self`` on every token, weighted by the routing (the module docstring).
    Reshapes, not (un)squeezes, around the token axis: the capture's view chains then fold into
    the model's own, and the layout pass sees (1, T, H) tokens."""
    tokens, hidden = hidden_states.shape
    experts = self.num_experts
    x_1TH = hidden_states.reshape(1, tokens, hidden)
    chosen_TKE = top_k_index.unsqueeze(-1) == torch.arange(experts, device=top_k_index.device)
    gates_TE = (chosen_TKE.to(top_k_weights.dtype) * top_k_weights.unsqueeze(-1)).sum(1)
    if gates_TE.dtype != hidden_states.dtype:
        gates_TE = gates_TE.to(hidden_states.dtype)

    h_1TX, inner = _gated(self, x_1TH, tokens, experts)  # X = E·I, expert-major
    down_bias = self.down_proj_bias if self.has_bias else None
    if self.has_post_expert_norm:  # the norm reads each expert's own output: no merged sum
        w_EIH = self.down_proj if self.is_transposed else self.down_proj.transpose(1, 2)
        y_1TEH = torch.einsum("ptei,eih->pteh", h_1TX.reshape(1, tokens, experts, inner), w_EIH)
        if down_bias is not None:
            y_1TEH = y_1TEH + down_bias
        out_1TH = (self.post_expert_norm(y_1TEH) * gates_TE.reshape(1, tokens, experts, 1)).sum(2)
    else:
        # the gates spread over each expert's I channels, and the biases they weigh, as products
        # of the (1, T, E) gates: on the tokens' channels-first form only those E channels turn
        spread_XE = torch.eye(experts, dtype=gates_TE.dtype, device=gates_TE.device).repeat_interleave(inner, 0)
        gates_1TE = gates_TE.reshape(1, tokens, experts)
        weighted_1TX = h_1TX * F.linear(gates_1TE, spread_XE)  # one-hot (E·I, E): exact
        out_1TH = F.linear(weighted_1TX, _merged_down(self.down_proj, self.is_transposed))
        if down_bias is not None:
            out_1TH = out_1TH + F.linear(gates_1TE, down_bias.transpose(0, 1))
    return out_1TH.reshape(tokens, hidden)


def _gated(self, x_1TH: torch.Tensor, tokens: int, experts: int) -> tuple[torch.Tensor, int]:
    """Every expert's first projection and gating: (1, T, E·I), expert-major, and I.

    transformers' default gate (``act(gate) · up`` over the two halves of each expert's rows) is
    two projections whose rows are every expert's gate half and every expert's up half: no axis
    is split. A gate over interleaved rows (GPT-OSS: gate, up, gate, up, …, then clamps) reads the
    flat (1, T, E·2I) projection, whose neighbours are still its pairs; any other gate reads
    (1, T, E, O), as its own code expects. (A gate that is not elementwise over its pairs computes
    otherwise: safe mode then keeps transformers' static routing, with the reason.)"""
    from transformers.integrations.moe import _default_apply_gate

    if not self.has_gate:
        bias = self.up_proj_bias.reshape(-1) if self.has_bias else None
        h_1TX = self.act_fn(F.linear(x_1TH, _projection(self.up_proj, self.is_transposed), bias))
        return h_1TX, h_1TX.shape[-1] // experts
    w_EOH = self.gate_up_proj.transpose(1, 2) if self.is_transposed else self.gate_up_proj
    bias_EO = self.gate_up_proj_bias if self.has_bias else None
    inner = w_EOH.shape[1] // 2
    if type(self)._apply_gate is _default_apply_gate and getattr(self, "is_concatenated", True):
        halves = []
        for part in (slice(0, inner), slice(inner, 2 * inner)):
            w_XH = w_EOH[:, part].reshape(experts * inner, -1)
            halves.append(F.linear(x_1TH, w_XH, None if bias_EO is None else bias_EO[:, part].reshape(-1)))
        gate_1TX, up_1TX = halves
        return self.act_fn(gate_1TX) * up_1TX, inner
    bias = None if bias_EO is None else bias_EO.reshape(-1)
    up_1TX2 = F.linear(x_1TH, w_EOH.reshape(experts * 2 * inner, -1), bias)  # (1, T, E·2I)
    if not getattr(self, "is_concatenated", True):
        # interleaved rows (gate, up, gate, up, …) of each expert, one expert after another, are
        # interleaved rows of them all: a gate that pairs neighbours reads the flat channels as they lie
        return self._apply_gate(up_1TX2), inner
    up_1TEO = up_1TX2.reshape(1, tokens, experts, 2 * inner)
    return self._apply_gate(up_1TEO).reshape(1, tokens, experts * inner), inner


# Ops whose output shape depends on the data (how many tokens reach an expert), and the grouped
# matmul transformers computes over such groups: routing no converter takes.
DATA_DEPENDENT = ("aten.nonzero", "aten.histc", "aten.bincount", "aten._unique", "aten.unique",
                  "aten.masked_select", "transformers.grouped_mm")


def data_dependent_routing(graph: torch.fx.Graph) -> list[str]:
    """The nodes of ``graph`` that route by data, each named with its op and its module."""
    found = []
    for node in graph.nodes:
        op = str(node.target) if node.op == "call_function" else ""
        if not op.startswith(DATA_DEPENDENT):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        where = (next(reversed(stack.values()))[0] if stack else "") or "the model"
        found.append(f"{node.name} ({op.rsplit('.', 1)[0]}) in {where}")
    return found


def routing_error(found: list[str]) -> str:
    """What to tell a user whose program routes by data."""
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"the program routes tokens by their values: {'; '.join(found[:3])}{more}. How many tokens reach "
            "each expert is known only at run time, and Core ML programs have static shapes. Mixture-of-"
            "experts blocks that run through transformers' ExpertsInterface are evaluated densely by optimize "
            "(every expert, its routing weight as a mask); routing written by hand needs that form too")
