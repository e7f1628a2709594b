"""The IR: a built Keras model as a networkx graph of layer calls, the `View` passes read and
edit it through, the edits that keep it valid, and the layer vocabulary (`kinds`)."""
from keras_rewrite.graph.schema import (LayerSpec, Slot, configs_equal, fresh_name, graph_unchanged,
                                        iter_graphs, iter_layer_nodes, map_structure, slots_of,
                                        to_graph, topological_order, validate)
from keras_rewrite.graph.view import Node, View, Weights

__all__ = ["LayerSpec", "Slot", "to_graph", "validate", "configs_equal", "fresh_name",
           "graph_unchanged", "iter_graphs", "iter_layer_nodes", "map_structure", "slots_of",
           "topological_order", "View", "Node", "Weights"]
