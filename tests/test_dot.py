"""keras_rewrite.dot: DOT text, graph diffs, and writing or rendering pictures."""
import os
import re
import shutil
import stat

import keras
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite import dot, edit
from keras_rewrite.graph import to_graph

NODE = re.compile(r'^\s*("(?:[^"\\]|\\.)*") \[', re.M)
EDGE = re.compile(r'^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*")(.*);$', re.M)


def parse(text):
    """(declared node ids, edges as (u, v, attrs)) of DOT text written by to_dot."""
    nodes = NODE.findall(text)
    assert len(nodes) == len(set(nodes)), "a node is declared twice"
    edges = EDGE.findall(text)
    assert text.count("{") == text.count("}")
    return set(nodes), edges


def conv_block(name="m"):
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = layers.Dropout(0.2, name="drop")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(2, name="head")(layers.Flatten(name="flat")(x)),
                       name=name)


def test_quote_escapes_quotes_backslashes_and_newlines():
    assert dot.quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_plain_graph_declares_every_edge_endpoint():
    text = dot.to_dot(to_graph(conv_block()))
    nodes, edges = parse(text)
    assert text.startswith('digraph "m" {')
    assert {'"x"', '"conv"', '"head"', '"output:0"'} <= nodes
    assert all(u in nodes and v in nodes for u, v, _ in edges)
    assert ('"conv"', '"drop"', "") in edges
    assert "legend" not in text and "fillcolor=\"#" not in text  # nothing to highlight
    assert "Conv2D\\n(None,6,6,4)" in text  # class and output shape in the label


def test_identical_graphs_have_an_empty_diff():
    model = conv_block()
    assert dot.diff_graphs(to_graph(model), to_graph(model)).empty


def test_diff_marks_changed_new_and_moved_layers():
    model = conv_block()
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout", "reorder"])
    before, after = to_graph(model), to_graph(new)
    diff = dot.diff_graphs(before, after)
    assert diff.changed["head"] == ["kernel_regularizer"]
    assert diff.changed["drop"] == ["class"]
    assert "activation" in diff.changed["conv"]
    assert diff.new == {"conv_activation"}
    assert set(diff.moved) == {"bn", "pool", "drop"}
    assert diff.moved["drop"] == ["conv"]  # drop came right after conv before
    assert not diff.removed and "flat" not in diff.moved  # a new producer alone is no move

    text = dot.to_dot(after, before=before, title="demo")
    nodes, edges = parse(text)
    assert all(u in nodes and v in nodes for u, v, _ in edges)
    assert f'fillcolor="{dot.COLORS["new"]}"' in text and "(new)" in text
    assert "(changed: kernel_regularizer)" in text and "(moved)" in text
    was_here = [(u, v) for u, v, attrs in edges if "was here" in attrs]
    assert ('"conv"', '"drop"') in was_here and all("dashed" in a for _, _, a in edges
                                                    if "was here" in a)
    assert '"cluster_legend"' in text and 'label="demo"' in text


def test_removed_layers_are_drawn_dashed_with_their_old_edges():
    model = conv_block()
    before, after = to_graph(model), to_graph(model)
    edit.remove_node(after, "drop")
    diff = dot.diff_graphs(before, after)
    assert diff.removed == {"drop"} and not diff.moved
    text = dot.to_dot(after, before=before)
    nodes, edges = parse(text)
    assert '"drop"' in nodes and "(removed)" in text
    old_edges = [(u, v) for u, v, attrs in edges if "dashed" in attrs]
    assert ('"conv"', '"drop"') in old_edges and ('"drop"', '"bn"') in old_edges


def test_nested_models_become_clusters_wired_to_their_insides():
    inner_in = keras.Input((4,), name="inner_in")
    inner = keras.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="block")
    outer_in = keras.Input((4,), name="outer_in")
    model = keras.Model(outer_in, layers.Dense(1, name="top")(inner(outer_in)), name="outer")
    text = dot.to_dot(to_graph(model))
    nodes, edges = parse(text)
    assert 'subgraph "cluster_block" {' in text and 'label="block (Functional)"' in text
    assert {'"block/inner_in"', '"block/inner_dense"'} <= nodes and '"block"' not in nodes
    pairs = {(u, v) for u, v, _ in edges}
    assert ('"outer_in"', '"block/inner_in"') in pairs
    assert ('"block/inner_dense"', '"top"') in pairs
    assert all(u in nodes and v in nodes for u, v in pairs)

    new = keras_rewrite.rewrite(model, ["l2"])
    diff = dot.diff_graphs(to_graph(model), to_graph(new))
    assert set(diff.changed) == {"block/inner_dense", "top"}


# --------------------------------------------------------------------------- write_picture


def test_dot_suffix_writes_the_text(tmp_path):
    picture = dot.write_picture("digraph {}\n", tmp_path / "g.dot")
    assert not picture.rendered and (tmp_path / "g.dot").read_text() == "digraph {}\n"


def test_without_graphviz_the_dot_file_is_written_next_to_the_svg(tmp_path, monkeypatch):
    monkeypatch.setattr(dot.shutil, "which", lambda name: None)
    picture = dot.write_picture("digraph {}\n", tmp_path / "graph.svg")
    assert os.listdir(tmp_path) == ["graph.dot"] and not picture.rendered
    assert picture.path == str(tmp_path / "graph.dot")
    assert "not on PATH" in picture.note
    assert f"dot -Tsvg {tmp_path / 'graph.dot'} -o {tmp_path / 'graph.svg'}" in picture.note


def fake_dot(tmp_path, body):
    script = tmp_path / "fake-dot"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_renders_with_the_dot_program(tmp_path):
    # A stand-in for Graphviz: writes its stdin to the -o file, so the call is checked.
    program = fake_dot(tmp_path, 'while [ "$1" != "-o" ]; do shift; done; cat > "$2"\n')
    picture = dot.write_picture("digraph {}\n", tmp_path / "g.svg", dot_program=program)
    assert picture.rendered and (tmp_path / "g.svg").read_text() == "digraph {}\n"


def test_graphviz_failure_is_one_line(tmp_path):
    program = fake_dot(tmp_path, 'echo "Error: syntax error in line 1" >&2\nexit 1\n')
    with pytest.raises(dot.PictureError, match=r"exited with status 1: Error: syntax error"):
        dot.write_picture("digraph {", tmp_path / "g.svg", dot_program=program)


def test_missing_folder(tmp_path):
    with pytest.raises(dot.PictureError, match="does not exist"):
        dot.write_picture("digraph {}", tmp_path / "nope" / "g.svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_real_graphviz_accepts_the_diff(tmp_path):
    model = conv_block()
    new = keras_rewrite.rewrite(model, ["spatial_dropout", "reorder"])
    text = dot.to_dot(to_graph(new), before=to_graph(model))
    picture = dot.write_picture(text, tmp_path / "diff.svg")
    assert picture.rendered and "<svg" in (tmp_path / "diff.svg").read_text()
