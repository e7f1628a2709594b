"""keras_rewrite.analysis.picture: self-contained SVG/HTML drawings of a model or a diff, checked by
parsing them (xml.etree for SVG, html.parser for HTML): every changed layer is there with its
kind, unchanged runs are collapsed, nothing refers outside the file, boxes do not overlap."""
import html.parser
import os
import re
import time
import xml.etree.ElementTree as ET

import keras
import networkx as nx
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.analysis import picture
from keras_rewrite.files.atomic_save import OutputError
from keras_rewrite.graph.schema import LayerSpec, to_graph
from keras_rewrite.cli import arguments
from helpers import conv_block, foldable

SVG = "{http://www.w3.org/2000/svg}"


def residual_graph(blocks, changed=(), removed=()):
    """A graph (no Keras model) of `blocks` residual blocks a_i -> b_i -> add_i(prev, b_i):
    3 layers per block; layers in `changed` get another config, those in `removed` go."""
    g = nx.MultiDiGraph(name="big", inputs=["x"], outputs=["output:0"])

    def add(name, *producers):
        g.add_node(name, kind="layer", spec=LayerSpec(name, object, {"units": 2 if name in
                                                                     changed else 1}),
                   output_shapes=[(None, 4)])
        for slot, producer in enumerate(producers):
            g.add_edge(producer, name, slot=slot, tensor_index=0)

    g.add_node("x", kind="input", spec=LayerSpec("x", object, {}), output_shapes=[(None, 4)])
    prev = "x"
    for i in range(blocks):
        into_b = prev
        if f"a{i}" not in removed:
            add(f"a{i}", prev)
            into_b = f"a{i}"
        add(f"b{i}", into_b)
        add(f"add{i}", prev, f"b{i}")
        prev = f"add{i}"
    g.add_node("output:0", kind="output", spec=None, output_shapes=[(None, 4)], index=0)
    g.add_edge(prev, "output:0", slot=0, tensor_index=0)
    return g


def svg_nodes(svg_text):
    root = ET.fromstring(svg_text)
    return root, [g for g in root.iter(SVG + "g") if "node" in g.get("class", "").split()]


def classes(element):
    return set(element.get("class").split())


def assert_self_contained(text):
    body = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in body and "//" not in re.sub(r"<script>.*?</script>", "", body,
                                                      flags=re.S)
    assert re.findall(r"url\(([^)]*)\)", body) == ["#arrow"] * len(
        re.findall(r"url\(", body))
    assert "@import" not in body and "<link" not in body and "<img" not in body


def assert_layout_sane(svg_text):
    """Boxes do not overlap; each edge goes from its source's bottom down to its target."""
    _, nodes = svg_nodes(svg_text)
    rects = {}
    for g in nodes:
        body = next(r for r in g.iter(SVG + "rect") if r.get("class") == "body")
        rects[g.get("id")] = tuple(float(body.get(k)) for k in ("x", "y", "width", "height"))
    boxes = sorted(rects.values())
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            if x2 >= x + w:
                break
            assert y2 >= y + h or y >= y2 + h2, "two boxes overlap"
    root = ET.fromstring(svg_text)
    edges = [p for p in root.iter(SVG + "path") if "edge" in p.get("class", "")]
    for edge in edges:
        source, target = rects[edge.get("data-from")], rects[edge.get("data-to")]
        assert target[1] > source[1] + source[3]
    return rects, edges


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.items = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "li":
            self.items.append(attrs)


def test_every_changed_layer_is_marked_with_its_kinds():
    model = conv_block()
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(
        model, ["l2", "spatial_dropout", "reorder"]))
    svg = picture.to_svg(picture.draw_diff(diff))
    _, nodes = svg_nodes(svg)
    by_id = {g.get("data-id"): g for g in nodes if g.get("data-id")}
    for layer in diff.layers:
        node = by_id[layer.id]
        assert {picture.CSS_CLASSES[k] for k in layer.kinds} <= classes(node)
        assert node.get("data-change") == " ".join(layer.kinds)
        assert node.get("data-layer") == layer.name
    assert classes(by_id["drop"]) == {"node", "moved", "changed-config"}
    assert classes(by_id["conv_activation"]) == {"node", "added"}
    assert 'class="node changed-config"' in svg
    # the legend names each kind with its count
    legend = {g.get("data-kind"): "".join(g.itertext())
              for g in ET.fromstring(svg).iter(SVG + "g") if g.get("class") == "legend-item"}
    assert legend["moved"] == "moved (inputs changed) (3)"
    assert legend["added"] == "added (1)" and legend["removed"] == "removed (0)"
    assert_layout_sane(svg)
    assert_self_contained(svg)


def test_removed_layers_are_dashed_and_wired_where_they_were():
    model = foldable()
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(model, ["fold_batchnorm"]))
    drawing = picture.draw_diff(diff, collapse=False)
    svg = picture.to_svg(drawing)
    _, nodes = svg_nodes(svg)
    bn = next(g for g in nodes if g.get("data-id") == "bn")
    assert classes(bn) == {"node", "removed"}
    conv = next(g for g in nodes if g.get("data-id") == "conv")
    assert classes(conv) == {"node", "changed-config", "changed-weights"}
    rects, edges = assert_layout_sane(svg)
    key = {g.get("data-id"): g.get("id") for g in nodes}
    dashed = {(e.get("data-from"), e.get("data-to")) for e in edges
              if "removed" in e.get("class")}
    solid = {(e.get("data-from"), e.get("data-to")) for e in edges
             if "removed" not in e.get("class")}
    assert dashed == {(key["conv"], key["bn"]), (key["bn"], key["relu"])}
    assert (key["conv"], key["relu"]) in solid


def test_unchanged_runs_collapse_on_a_big_graph():
    before = residual_graph(150)  # 451 layer calls
    after = residual_graph(150, changed={"b10", "a99"}, removed={"a140"})
    diff = keras_rewrite.diff_models(before, after)
    assert [(layer.id, layer.kinds) for layer in diff.layers] == [
        ("b10", ("config",)), ("a99", ("config",)), ("a140", ("removed",))]
    started = time.perf_counter()
    drawing = picture.draw_diff(diff)
    svg, page = picture.to_svg(drawing), picture.to_html(drawing)
    assert time.perf_counter() - started < 2.0
    _, nodes = svg_nodes(svg)
    assert len(nodes) <= 12  # input, output, 3 changed, and the runs between them
    runs = [g for g in nodes if "run" in classes(g)]
    seen = [g.get("data-id") for g in nodes if g.get("data-id")]
    for run in runs:
        names = run.get("data-layers").split()
        assert int(run.get("data-count")) == len(names) >= 2
        assert "".join(run.find(SVG + "text").itertext()).startswith(f"{len(names)} unchanged")
        seen += names
    every = set(before.nodes) | set(after.nodes)
    assert sorted(seen) == sorted(every) and len(seen) == len(set(seen))
    for layer in diff.layers:  # changed layers are never inside a run
        assert layer.id in seen[:len(nodes)]
    assert_layout_sane(svg)
    assert_self_contained(svg)
    assert_self_contained(page)

    everything = picture.to_svg(picture.draw_diff(diff, collapse=False))
    _, nodes = svg_nodes(everything)
    assert len(nodes) == len(every) and not any("run" in classes(g) for g in nodes)
    assert_layout_sane(everything)


def test_html_lists_each_change_linking_to_its_box_and_works_offline():
    model = conv_block()
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(
        model, ["l2", "spatial_dropout", "reorder"]))
    page = picture.to_html(picture.draw_diff(diff, title="a.keras -> b.keras"))
    parser = Page()
    parser.feed(page)
    changes = [item for item in parser.items if "data-box" in item]
    assert len(changes) == len(diff.layers)
    svg_text = page[page.index("<svg"):page.index("</svg>") + 6]
    _, nodes = svg_nodes(svg_text)
    box_of = {g.get("id"): g for g in nodes}
    for item, layer in zip(changes, diff.layers):
        assert box_of[item["data-box"]].get("data-id") == layer.id
        assert item["data-kinds"] == " ".join(layer.kinds)
    for tag, attrs in parser.tags:
        assert "src" not in attrs and tag not in ("link", "img", "iframe", "object")
        assert attrs.get("href", "#").startswith("#")
    assert_self_contained(page)


def test_a_swap_next_to_a_removed_layer_draws_without_a_cycle():
    """Old a -> r -> b, new b -> a with r gone: the old edges would close a cycle."""
    def chain(names):
        g = nx.MultiDiGraph(name="s", inputs=["x"], outputs=["output:0"])
        g.add_node("x", kind="input", spec=LayerSpec("x", object, {}), output_shapes=None)
        prev = "x"
        for name in names:
            g.add_node(name, kind="layer", spec=LayerSpec(name, object, {}),
                       output_shapes=None)
            g.add_edge(prev, name, slot=0, tensor_index=0)
            prev = name
        g.add_node("output:0", kind="output", spec=None, output_shapes=None, index=0)
        g.add_edge(prev, "output:0", slot=0, tensor_index=0)
        return g

    diff = keras_rewrite.diff_models(chain(["a", "r", "b"]), chain(["b", "a"]))
    assert {layer.id: layer.kinds for layer in diff.layers} == {
        "b": ("moved",), "a": ("moved",), "r": ("removed",)}
    svg = picture.to_svg(picture.draw_diff(diff))
    _, nodes = svg_nodes(svg)
    assert {g.get("data-id") for g in nodes} == {"x", "a", "b", "r", "output:0"}
    assert_layout_sane(svg)


def test_plain_graph_with_a_nested_model_cluster():
    inner_in = keras.Input((4,), name="inner_in")
    inner = keras.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="block")
    outer_in = keras.Input((4,), name="outer_in")
    model = keras.Model(outer_in, layers.Dense(1, name="top")(inner(outer_in)), name="outer")
    drawing = picture.draw_graph(to_graph(model), title="model.keras")
    svg = picture.to_svg(drawing)
    root, nodes = svg_nodes(svg)
    assert {g.get("data-id") for g in nodes} == {"outer_in", "block/inner_in",
                                                 "block/inner_dense", "top", "output:0"}
    assert all("unchanged" in classes(g) for g in nodes)
    clusters = [g for g in root.iter(SVG + "g") if g.get("class") == "cluster"]
    assert ["".join(c.find(SVG + "text").itertext()) for c in clusters] == [
        "block (Functional)"]
    assert 'class="legend' not in svg
    assert_layout_sane(svg)
    dot = picture.to_dot(drawing)
    assert dot.startswith('digraph "model.keras" {') and dot.count("->") == 4


# --------------------------------------------------------------------------- write_picture


@pytest.fixture(scope="module")
def drawing():
    model = conv_block()
    return picture.draw_diff(keras_rewrite.diff_models(model, keras_rewrite.rewrite(
        model, ["reorder"])))


@pytest.mark.parametrize("name, start", [("d.svg", "<?xml"), ("d.html", "<!DOCTYPE html>"),
                                         ("d.htm", "<!DOCTYPE html>"), ("d.dot", "digraph"),
                                         ("d.gv", "digraph")])
def test_each_suffix(tmp_path, drawing, name, start):
    written = picture.write_picture(drawing, tmp_path / name)
    assert written.path == str(tmp_path / name)
    assert (tmp_path / name).read_text().startswith(start)
    assert os.listdir(tmp_path) == [name]  # no temporary file left


def test_never_overwrites_without_permission(tmp_path, drawing):
    (tmp_path / "d.svg").write_text("precious")
    with pytest.raises(OutputError, match="already exists"):
        picture.write_picture(drawing, tmp_path / "d.svg")
    assert (tmp_path / "d.svg").read_text() == "precious"
    picture.write_picture(drawing, tmp_path / "d.svg", overwrite=True)
    assert "<svg" in (tmp_path / "d.svg").read_text()


def test_a_symlink_is_replaced_not_written_through(tmp_path, drawing):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "d.html").symlink_to(victim)
    picture.write_picture(drawing, tmp_path / "d.html", overwrite=True)
    assert victim.read_text() == "keep" and not (tmp_path / "d.html").is_symlink()


@pytest.mark.parametrize("name, message", [("d.png", "cannot draw a .png file"),
                                           ("nope/d.svg", "does not exist")])
def test_refusals(tmp_path, drawing, name, message):
    with pytest.raises(picture.PictureError, match=message):
        picture.write_picture(drawing, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_the_command_line_knows_the_same_suffixes():
    assert arguments.PICTURE_SUFFIXES == picture.PICTURE_SUFFIXES


@pytest.mark.slow  # DenseNet121 (~430 layers): building and rewriting take seconds
def test_densenet121_diff_picture(tmp_path):
    model = keras.applications.DenseNet121(weights=None)
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(model, ["fold_batchnorm"]))
    started = time.perf_counter()
    drawing = picture.draw_diff(diff)
    svg, page = picture.to_svg(drawing), picture.to_html(drawing)
    assert time.perf_counter() - started < 3.0
    _, nodes = svg_nodes(svg)
    by_id = {g.get("data-id"): g for g in nodes if g.get("data-id")}
    for layer in diff.layers:
        assert {picture.CSS_CLASSES[k] for k in layer.kinds} <= classes(by_id[layer.id])
    assert len(nodes) < 200  # 429 layers + removed ones, drawn as ~180 boxes
    rects, _ = assert_layout_sane(svg)
    widths = [w for _, _, w, _ in rects.values()]
    assert max(x + w for x, _, w, _ in rects.values()) < 1000  # a column, not a staircase
    assert max(widths) < 420
    assert_self_contained(page)
    assert np.isfinite([float(v) for v in re.findall(r'height="([0-9.]+)"', svg)]).all()
