"""Find the decode head of a YOLOv8 export: the nodes INT8 must leave in float.

The head decode is everything between the last prediction convolutions and the outputs: the per-level
reshapes and concatenations, the DFL (reshape, transpose, softmax and its fixed 1x1 ``arange`` convolution),
the box decode (anchors, strides, cx/cy/w/h) and the class sigmoid. Walking backwards from the outputs, we
keep every node until a convolution that is not the DFL's; shape computations (``Shape``/``ShapeOf``) end a
walk because they carry no data. The same pure walk runs on an ONNX graph and on an OpenVINO model, each
reduced to a small :class:`GraphNode` map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from deploy.errors import StageError


class Op(str, Enum):
    CONV = "conv"
    SOFTMAX = "softmax"
    SHAPE = "shape"
    CONST = "const"
    OTHER = "other"


@dataclass(frozen=True)
class GraphNode:
    """One operation: its kind and the producer nodes of its inputs (None for graph inputs/initializers)."""

    name: str
    op: Op
    inputs: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class HeadInfo:
    """The decode head: ``nodes`` (every node to keep in float, in graph order), the DFL convolutions among
    them, and the prediction convolutions where the walk stopped (they stay quantizable)."""

    nodes: tuple[str, ...]
    dfl: tuple[str, ...]
    boundary: tuple[str, ...]


def _reaches_softmax(nodes: Mapping[str, GraphNode], name: str | None, hops: int) -> bool:
    """Does ``name``'s data input chain (first inputs, through non-conv ops) reach a Softmax within ``hops``?"""
    while name is not None and hops >= 0:
        node = nodes[name]
        if node.op is Op.SOFTMAX:
            return True
        if node.op in (Op.CONV, Op.SHAPE, Op.CONST) or not node.inputs:
            return False
        name, hops = node.inputs[0], hops - 1
    return False


def is_dfl(nodes: Mapping[str, GraphNode], name: str) -> bool:
    """A convolution fed (through at most 3 reshape/transpose hops) by a Softmax: the DFL expectation."""
    node = nodes[name]
    return node.op is Op.CONV and bool(node.inputs) and _reaches_softmax(nodes, node.inputs[0], 3)


def decode_head(nodes: Mapping[str, GraphNode], outputs: list[str], order: list[str] | None = None) -> HeadInfo:
    """Walk back from the producers of the ``outputs``; stop at non-DFL convolutions.

    Args:
        nodes: every node by name.
        outputs: names of the nodes producing the graph outputs.
        order: node names in graph order (default: ``nodes``' order), to order the result.

    Raises:
        StageError: no prediction convolution bounds the walk (not a YOLO detection graph).
    """
    head: set[str] = set()
    dfl: set[str] = set()
    boundary: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in head or name in boundary:
            continue
        node = nodes[name]
        if node.op is Op.CONV:
            if not is_dfl(nodes, name):
                boundary.add(name)
                continue
            dfl.add(name)
        head.add(name)
        if node.op is not Op.SHAPE:
            stack.extend(i for i in node.inputs if i is not None)
    if not boundary:
        raise StageError("could not locate the detection head: no convolution precedes the outputs")
    ranked = list(order if order is not None else nodes)
    return HeadInfo(
        tuple(n for n in ranked if n in head),
        tuple(n for n in ranked if n in dfl),
        tuple(n for n in ranked if n in boundary),
    )


# ---------------------------------------------------------------- ONNX
_ONNX_OPS = {"Conv": Op.CONV, "Softmax": Op.SOFTMAX, "Shape": Op.SHAPE, "Constant": Op.CONST}


def onnx_nodes(model: Any) -> tuple[dict[str, GraphNode], list[str]]:
    """An ``onnx.ModelProto`` -> ({node name: GraphNode}, names of the nodes producing the graph outputs).

    Unnamed nodes get ``<op_type>_<index>`` names; name them before quantizing (ONNX Runtime needs names
    to exclude nodes; :func:`name_nodes` does it).
    """
    graph = model.graph
    producer: dict[str, str] = {}
    names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(graph.node)]
    for name, n in zip(names, graph.node, strict=True):
        for t in n.output:
            producer[t] = name
    nodes = {
        name: GraphNode(name, _ONNX_OPS.get(n.op_type, Op.OTHER), tuple(producer.get(t) for t in n.input))
        for name, n in zip(names, graph.node, strict=True)
    }
    missing = [o.name for o in graph.output if o.name not in producer]
    if missing:
        raise StageError(f"graph outputs {missing} are not produced by any node")
    return nodes, [producer[o.name] for o in graph.output]


def name_nodes(model: Any) -> int:
    """Give every unnamed node of an ``onnx.ModelProto`` a unique name (in place); returns how many it named."""
    taken = {n.name for n in model.graph.node if n.name}
    count = 0
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in taken:
                name += "_"
            n.name = name
            taken.add(name)
            count += 1
    return count


def onnx_head(model: Any) -> HeadInfo:
    """The decode head of an ONNX YOLOv8 detection model."""
    nodes, outputs = onnx_nodes(model)
    return decode_head(nodes, outputs)


# ---------------------------------------------------------------- OpenVINO
_OV_OPS = {
    "Convolution": Op.CONV,
    "Softmax": Op.SOFTMAX,
    "SoftMax": Op.SOFTMAX,
    "ShapeOf": Op.SHAPE,
    "Constant": Op.CONST,
}


def openvino_nodes(ov_model: Any) -> tuple[dict[str, GraphNode], list[str], list[str]]:
    """An ``openvino.Model`` -> (nodes by friendly name, producers of the Results, names in graph order)."""
    ops = list(ov_model.get_ordered_ops())
    nodes: dict[str, GraphNode] = {}
    for op in ops:
        inputs = tuple(v.get_node().get_friendly_name() for v in op.input_values())
        name = op.get_friendly_name()
        nodes[name] = GraphNode(name, _OV_OPS.get(op.get_type_name(), Op.OTHER), inputs)
    outputs = [r.input_value(0).get_node().get_friendly_name() for r in ov_model.get_results()]
    return nodes, outputs, [op.get_friendly_name() for op in ops]


def openvino_head(ov_model: Any) -> HeadInfo:
    """The decode head of an OpenVINO YOLOv8 model (``Constant`` inputs are left out of ``nodes``)."""
    nodes, outputs, order = openvino_nodes(ov_model)
    info = decode_head(nodes, outputs, order)
    kept = tuple(n for n in info.nodes if nodes[n].op is not Op.CONST)
    return HeadInfo(kept, info.dfl, info.boundary)
