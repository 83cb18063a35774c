"""A plain view of an exported ML Program: its ops, their values, and the op mix.

Read from the saved model's protobuf (works on Linux, without loading the model).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import InputError

RESHAPE_FAMILY = ("reshape", "expand_dims", "squeeze", "reshape_like")


@dataclass(frozen=True)
class MilValue:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class MilOp:
    type: str
    inputs: tuple[str, ...]
    outputs: tuple[MilValue, ...]
    params: dict = field(default_factory=dict, compare=False, hash=False)  # parameter → its argument names
    value: tuple | None = None  # a const's value when stored inline (small consts); None in the weight file
    stored_bytes: int = 0  # a constexpr op's compressed data (attributes or inline inputs): bytes as stored

    @property
    def name(self) -> str:
        return self.outputs[0].name if self.outputs else self.type


def _value(named) -> MilValue:
    from coremltools.proto import MIL_pb2

    tt = named.type.tensorType
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else -1 for d in tt.dimensions)
    return MilValue(named.name, MIL_pb2.DataType.Name(tt.dataType), dims)


def _immediate(op) -> tuple | None:
    val = op.attributes.get("val") if op.type == "const" else None
    if val is None or val.WhichOneof("value") != "immediateValue":
        return None
    tensor = val.immediateValue.tensor
    kind = tensor.WhichOneof("value")
    return tuple(getattr(tensor, kind).values) if kind else None


def dtype_bits(dtype: str) -> int:
    """Bits per element of a MIL dtype name (FLOAT16 16, UINT4 4, INT8 8, BOOL 8)."""
    digits = "".join(c for c in dtype if c.isdigit())
    return int(digits) if digits else 8


def _attribute_bytes(op) -> int:
    """Bytes of the tensors a ``constexpr_*`` op holds — as attributes (iOS 16) or as inline
    input values (iOS 18): the look-up table and indices, the quantized data and its scales, a
    sparse mask and values — as stored."""
    if not op.type.startswith("constexpr"):
        return 0
    from coremltools.proto import MIL_pb2

    total = 0
    inline = [a.value for v in op.inputs.values() for a in v.arguments if a.WhichOneof("binding") == "value"]
    for value in list(op.attributes.values()) + inline:
        if value.type.WhichOneof("type") != "tensorType":
            continue
        tt = value.type.tensorType
        count = 1
        for d in tt.dimensions:
            count *= d.constant.size if d.WhichOneof("dimension") == "constant" else 1
        total += -(-count * dtype_bits(MIL_pb2.DataType.Name(tt.dataType)) // 8)
    return total


def _walk(block, out: list[MilOp]) -> None:
    for op in block.operations:
        params = {k: tuple(a.name for a in v.arguments if a.name) for k, v in op.inputs.items()}
        inputs = tuple(name for names in params.values() for name in names)
        out.append(MilOp(op.type, inputs, tuple(_value(o) for o in op.outputs), params, _immediate(op),
                         _attribute_bytes(op)))
        for inner in op.blocks:
            _walk(inner, out)


def load_spec(model):
    """The spec of an MLModel, a spec, or the path of a saved .mlpackage / .mlmodel."""
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        import coremltools as ct

        model = ct.models.MLModel(str(model), skip_model_load=True)
    return model.get_spec() if hasattr(model, "get_spec") else model


def function_names(model) -> list[str]:
    """The functions of an ML Program, the default one first."""
    spec = load_spec(model)
    default = spec.description.defaultFunctionName or "main"
    return sorted(spec.mlProgram.functions, key=lambda name: (name != default, name))


def _function(spec, function: str | None):
    """A function of the program: ``function``, else the default one (``main`` in a
    one-function program)."""
    name = function or spec.description.defaultFunctionName or "main"
    if name not in spec.mlProgram.functions:
        raise InputError(f"the program has no function {name!r}; its functions: {sorted(spec.mlProgram.functions)}")
    return spec.mlProgram.functions[name]


def program_inputs(model, function: str | None = None) -> list[MilValue]:
    """A function's inputs (the default one's unless named; a dimension of -1 is flexible)."""
    spec = load_spec(model)
    return [_value(v) for v in _function(spec, function).inputs]


def program_ops(model, function: str | None = None) -> list[MilOp]:
    """Every op of a function (the default one unless named; nested blocks included), in
    program order.

    ``model``: an MLModel, its spec, or the path of a saved .mlpackage."""
    spec = load_spec(model)
    fn = _function(spec, function)
    ops: list[MilOp] = []
    _walk(fn.block_specializations[fn.opset], ops)
    return ops


def op_mix(ops: list[MilOp]) -> Counter:
    """Non-const op types and their counts."""
    return Counter(op.type for op in ops if op.type != "const")


def summary(ops: list[MilOp]) -> dict[str, int]:
    """The figures the CLI table and the tests use."""
    mix = op_mix(ops)
    return {
        "ops": sum(mix.values()),
        "linear": mix["linear"],
        "conv": mix["conv"],
        "conv_4d": sum(1 for op in ops if op.type == "conv" and op.outputs[0].rank == 4),
        "transpose": mix["transpose"],
        "reshape": sum(mix[t] for t in RESHAPE_FAMILY),
        "softmax": mix["softmax"],
        "einsum": mix["einsum"],
        "gather": mix["gather"] + mix["gather_nd"],
        "max_rank": max((v.rank for op in ops for v in op.outputs), default=0),
        "rank5": sum(1 for op in ops if op.type != "const" and any(v.rank >= 5 for v in op.outputs)),
    }


def consumers(ops: list[MilOp]) -> dict[str, list[MilOp]]:
    """Value name → the ops that read it."""
    out: dict[str, list[MilOp]] = {}
    for op in ops:
        for name in op.inputs:
            out.setdefault(name, []).append(op)
    return out


def ops_between(ops: list[MilOp], kind: str = "conv",
                barrier: tuple[str, ...] = ("matmul", "einsum", "softmax", "linear")) -> dict[str, list[MilOp]]:
    """For every op of type ``kind``: the ops on its forward paths to the next ``kind`` ops,
    not crossing a ``barrier`` op.

    With the defaults this is the glue between consecutive projections that does not pass
    through an attention product: activations, residual adds, norms — and any layout copy."""
    readers = consumers(ops)
    found: dict[str, list[MilOp]] = {}
    for op in ops:
        if op.type != kind:
            continue
        reach: dict[str, MilOp] = {}  # ops reachable from op without crossing kind or barrier
        ends: list[MilOp] = []        # ops of that reach which feed a ``kind`` op
        frontier = [o.name for o in op.outputs]
        while frontier:
            for nxt in readers.get(frontier.pop(), []):
                if nxt.type in barrier or nxt.name in reach:
                    continue
                if nxt.type == kind:
                    continue
                reach[nxt.name] = nxt
                if any(r.type == kind for o in nxt.outputs for r in readers.get(o.name, [])):
                    ends.append(nxt)
                frontier.extend(o.name for o in nxt.outputs)
        producers = {o.name: x for x in reach.values() for o in x.outputs}
        on_path: dict[str, MilOp] = {}
        stack = list(ends)
        while stack:
            x = stack.pop()
            if x.name in on_path:
                continue
            on_path[x.name] = x
            stack.extend(producers[i] for i in x.inputs if i in producers)
        found[op.name] = [x for x in reach.values() if x.name in on_path]
    return found
