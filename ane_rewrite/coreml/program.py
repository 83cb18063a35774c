"""The program the passes produced, as the ExportedProgram coremltools converts — no capture.

``optimize`` returns the GraphModule its passes rewrote (what ``ExportedProgram.module()`` made
of the capture: parameters and constants read by ``get_attr``, a pytree calling convention).
coremltools converts an ``ExportedProgram``: the same graph with every tensor it reads lifted
to a placeholder named in a graph signature. ``exported_program`` builds that from the graph as
it is: nothing is traced again, so the graph coremltools sees is, node for node, the one the
passes left (and the one ``verify`` ran).

    get_attr(p) for a parameter            → placeholder, InputSpec PARAMETER p
    get_attr(b) for a persistent buffer    → placeholder, InputSpec BUFFER b
    get_attr(c) for any other tensor       → placeholder, InputSpec CONSTANT_TENSOR c
    placeholder x (a user input)           → InputSpec USER_INPUT
    output values                          → OutputSpec USER_OUTPUT

``states`` (a stateful model: a KV cache) names user inputs that are states instead, each with
the output that is its new value: ``{input name: (state name, output index)}``. Such an input
becomes a persistent buffer (InputSpec BUFFER, a zero tensor of its shape) and its output a
BUFFER_MUTATION, which coremltools converts into a Core ML state read and updated in place.
"""
from __future__ import annotations

import copy

import torch
from torch.export import ExportedProgram
from torch.export.exported_program import ModuleCallEntry, ModuleCallSignature
from torch.export.graph_signature import (ExportGraphSignature, InputKind, InputSpec, OutputKind, OutputSpec,
                                          TensorArgument)
from torch.fx import GraphModule
from torch.fx.graph import CodeGen

from ..errors import ExportError


def is_captured(model: torch.nn.Module) -> bool:
    """Whether ``model`` is an ATen graph with a recorded value on every input — what capture
    and the passes produce — so that it converts as it is."""
    if not isinstance(model, GraphModule):
        return False
    inputs = [n for n in model.graph.nodes if n.op == "placeholder"]
    return bool(inputs) and all(isinstance(n.meta.get("val"), torch.Tensor) for n in inputs)


def _non_persistent(gm: GraphModule) -> set[str]:
    names = set()
    for prefix, module in gm.named_modules():
        names |= {f"{prefix}.{b}" if prefix else b for b in module._non_persistent_buffers_set}
    return names


def _tensor_attr(gm: GraphModule, target: str) -> torch.Tensor:
    owner = gm
    *path, leaf = target.split(".")
    for part in path:
        owner = getattr(owner, part)
    value = getattr(owner, leaf)
    if not isinstance(value, torch.Tensor):
        raise ExportError(f"get_attr {target} reads a {type(value).__name__}, not a tensor: no Core ML form")
    return value


def _drop_input_guards(gm: GraphModule) -> None:
    """``ExportedProgram.module()`` calls a guard on its inputs (their shapes); the program's
    signature carries them instead. Any other call of a submodule has no Core ML form."""
    from torch.export._unlift import GuardsFn

    for node in [n for n in gm.graph.nodes if n.op == "call_module"]:
        if isinstance(gm.get_submodule(node.target), GuardsFn) and not node.users:
            gm.graph.erase_node(node)
        else:
            raise ExportError(f"node {node.name} calls submodule {node.target}: not an ATen graph")


def exported_program(model: GraphModule, states: dict[str, tuple[str, int]] | None = None) -> ExportedProgram:
    """The ExportedProgram of a captured (and rewritten) GraphModule; ``model`` is not changed."""
    if not is_captured(model):
        raise ExportError(f"{type(model).__name__} is not a captured ATen graph (no recorded input values)")
    states = states or {}
    gm = copy.deepcopy(model)
    graph = gm.graph
    _drop_input_guards(gm)
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    unknown = sorted(set(states) - set(placeholders))
    if unknown:
        raise ExportError(f"states name inputs {unknown} the graph does not have (inputs: {sorted(placeholders)})")
    first = next(iter(placeholders.values()))
    for name in states:  # buffers come before the user inputs
        first.prepend(placeholders[name])
    codegen = graph._codegen
    pytree_info = getattr(codegen, "pytree_info", None)
    parameters = dict(gm.named_parameters(remove_duplicate=False))
    non_persistent = _non_persistent(gm)
    buffers = {name for name, _ in gm.named_buffers(remove_duplicate=False)}
    user_inputs = [n for n in graph.nodes if n.op == "placeholder" and n.name not in states]
    lifted: dict[str, torch.fx.Node] = {}
    state_dict, constants, specs = {}, {}, []
    for name, (target, _) in states.items():
        state_dict[target] = torch.zeros(placeholders[name].meta["val"].shape, dtype=placeholders[name].meta["val"].dtype)
        specs.append(InputSpec(InputKind.BUFFER, TensorArgument(name), target, True))
    for node in [n for n in graph.nodes if n.op == "get_attr"]:
        target = node.target
        if target not in lifted:
            value = _tensor_attr(gm, target)
            with graph.inserting_before(first):
                ph = graph.placeholder(f"c_{target.replace('.', '_')}")
            ph.meta["val"] = node.meta.get("val")
            lifted[target] = ph
            if target in parameters:
                kind, persistent = InputKind.PARAMETER, None
                state_dict[target] = value
            elif target in buffers and target not in non_persistent:
                kind, persistent = InputKind.BUFFER, True
                state_dict[target] = value
            else:
                kind, persistent = InputKind.CONSTANT_TENSOR, None
                constants[target] = value
            specs.append(InputSpec(kind, TensorArgument(ph.name), target, persistent))
        node.replace_all_uses_with(lifted[target])
        graph.erase_node(node)
    specs += [InputSpec(InputKind.USER_INPUT, TensorArgument(n.name), None) for n in user_inputs]
    outputs = next(n for n in graph.nodes if n.op == "output").args[0]
    outputs = outputs if isinstance(outputs, (list, tuple)) else (outputs,)
    if not all(isinstance(o, torch.fx.Node) for o in outputs):
        raise ExportError("an output of the graph is a constant, not a computed tensor: Core ML has no form for it")
    mutated = {index: target for target, index in states.values()}
    user_outputs = [o for i, o in enumerate(outputs) if i not in mutated]
    out_specs = [OutputSpec(OutputKind.BUFFER_MUTATION, TensorArgument(outputs[i].name), target)
                 for i, target in sorted(mutated.items())]  # the verifier wants them first
    out_specs += [OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(o.name), None) for o in user_outputs]
    if states:
        output_node = next(n for n in graph.nodes if n.op == "output")
        output_node.args = (tuple([outputs[i] for i in sorted(mutated)] + user_outputs),)
    graph._codegen = CodeGen()  # flat inputs and outputs: the signature carries the structure
    gm.recompile()
    call = ModuleCallSignature(inputs=[TensorArgument(n.name) for n in user_inputs],
                               outputs=[TensorArgument(o.name) for o in user_outputs],
                               in_spec=pytree_info.in_spec if pytree_info and not states else None,
                               out_spec=pytree_info.out_spec if pytree_info and not states else None)
    return ExportedProgram(root=gm, graph=graph, graph_signature=ExportGraphSignature(specs, out_specs),
                           state_dict=state_dict, range_constraints={},
                           module_call_graph=[ModuleCallEntry("", call)], constants=constants)
