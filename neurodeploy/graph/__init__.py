"""The float graph IR every model enters through: nodes (:mod:`.nodes`), the graph and its checks
(:mod:`.ir`), front ends (:mod:`.from_model`; :mod:`.from_torch` for networks written in
PyTorch), a float64 interpreter (:mod:`.interpret`) and the graph → graph folding passes
(:mod:`.passes`)."""

from neurodeploy.graph.from_model import graph_from_model, neuron_node, nodes_from_module
from neurodeploy.graph.from_torch import TorchGraphBuilder, graph_from_torch, load_graph_weights
from neurodeploy.graph.interpret import run_graph
from neurodeploy.graph.ir import Edge, Graph, GraphBuilder, GraphError
from neurodeploy.graph.nodes import (
    IF,
    LI,
    LIF,
    Add,
    Affine,
    AvgPool,
    BatchNorm,
    Bias,
    Conv,
    CubaLIF,
    Delay,
    Flatten,
    Input,
    MaxPool,
    Node,
    Output,
    ReLU,
    Scale,
    SumPool,
)
from neurodeploy.graph.passes import (
    batch_norm_affine,
    fold_all,
    fold_avg_pool,
    fold_batch_norm,
    fold_bn_into,
    fold_decay_input,
    fold_trsg_scale,
)

__all__ = [
    "IF", "LI", "LIF", "Add", "Affine", "AvgPool", "BatchNorm", "Bias", "Conv", "CubaLIF", "Delay", "Edge",
    "Flatten", "Graph", "GraphBuilder", "GraphError", "Input", "MaxPool", "Node", "Output", "ReLU",
    "Scale", "SumPool", "TorchGraphBuilder", "batch_norm_affine", "fold_all", "fold_avg_pool", "fold_batch_norm",
    "fold_bn_into", "fold_decay_input", "fold_trsg_scale", "graph_from_model", "graph_from_torch",
    "load_graph_weights", "neuron_node", "nodes_from_module", "run_graph",
]
