"""The layered DAG layout: layers by depth, placeholder points on long edges, barycentre
sweeps for the order in each layer, x positions pulled toward the neighbours' centres."""
from __future__ import annotations

from keras_rewrite.analysis.picture.style import (CHAR_WIDTH, DUMMY_WIDTH, GAP_X, GAP_Y,
                                                  LINE_HEIGHT, MARGIN, PAD_X, PAD_Y, STRIPE, _clip)


def _layout(boxes, edges, header: float) -> None:
    """Place `boxes` (in topological order) and route `edges` (sets x, y, w, h, points)."""
    for box in boxes:
        box.lines = [_clip(line) for line in box.lines]
        box.w = max(len(line) for line in box.lines) * CHAR_WIDTH + 2 * PAD_X + STRIPE
        box.h = len(box.lines) * LINE_HEIGHT + 2 * PAD_Y
    index = {box.key: i for i, box in enumerate(boxes)}
    preds = {box.key: [] for box in boxes}
    for edge in edges:
        preds[edge.target].append(edge.source)
    rank = {}
    for box in boxes:  # longest path from the sources
        rank[box.key] = max((rank[p] + 1 for p in preds[box.key]), default=0)

    # Long edges pass through one placeholder per layer they cross.
    width = {box.key: box.w for box in boxes}
    up, down = {k: [] for k in rank}, {k: [] for k in rank}
    chains = []
    for n, edge in enumerate(edges):
        chain = [edge.source]
        for level in range(rank[edge.source] + 1, rank[edge.target]):
            dummy = f"d{n}_{level}"
            rank[dummy], width[dummy] = level, DUMMY_WIDTH
            up[dummy], down[dummy] = [], []
            chain.append(dummy)
        chain.append(edge.target)
        weight = 0.05 if edge.removed else 1.0  # removed layers hang beside, not in line
        for a, b in zip(chain, chain[1:]):
            down[a].append((b, weight))
            up[b].append((a, weight))
        chains.append(chain)
    levels = [[] for _ in range(max(rank.values(), default=0) + 1)]
    hint = {}  # initial order: boxes in topological order, placeholders after their source
    for n, chain in enumerate(chains):
        for dummy in chain[1:-1]:
            hint[dummy] = index[chain[0]] + 0.5
    for key in sorted(rank, key=lambda k: hint.get(k, index.get(k))):
        levels[rank[key]].append(key)

    # Order within each layer: barycentre sweeps, down then up.
    position = {}

    def number(level):
        for i, key in enumerate(level):
            position[key] = i

    for level in levels:
        number(level)
    for sweep in range(8):
        downward = sweep % 2 == 0
        sequence = levels[1:] if downward else levels[-2::-1]
        for level in sequence:
            neighbours = up if downward else down
            keyed = []
            for i, key in enumerate(level):
                keyed.append((_mean([(position[k], w) for k, w in neighbours[key]],
                                    position[key]), i, key))
            keyed.sort()
            level[:] = [key for _, _, key in keyed]
            number(level)

    # x: each layer packed, then pulled toward its neighbours' centres, keeping the order;
    # in each layer the most important box (a layer, not a removed one, not a placeholder)
    # gets its wish and the others make room around it, so the main line stays straight.
    removed_keys = {box.key for box in boxes if "removed" in box.kinds}
    priority = {k: (0 if k not in index else 1 if k in removed_keys else 2,
                    len(up[k]) + len(down[k])) for k in rank}
    x = {}
    for level in levels:
        cursor = 0.0
        for key in level:
            x[key] = cursor
            cursor += width[key] + GAP_X
    for sweep in range(7):
        downward = sweep % 2 == 0
        sequence = levels[1:] if downward else levels[-2::-1]
        neighbours = up if downward else down
        for level in sequence:
            desired = [_centre_of(neighbours[key], x, width, priority, x[key] + width[key] / 2)
                       - width[key] / 2 for key in level]
            anchor = max(range(len(level)), key=lambda i: (priority[level[i]], -i))
            for key, value in zip(level, _place(desired, [width[k] for k in level], anchor)):
                x[key] = value
    shift = MARGIN - min(x.values(), default=0.0)
    heights = {box.key: box.h for box in boxes}
    y, top = header, {}
    for i, level in enumerate(levels):
        top[i] = y
        y += max((heights.get(k, 0) for k in level), default=0) + GAP_Y
    for box in boxes:
        box.x = x[box.key] + shift
        level_height = max(heights.get(k, 0) for k in levels[rank[box.key]])
        box.y = top[rank[box.key]] + (level_height - box.h) / 2

    # Edges: from the bottom of the source to the top of the target, through placeholders;
    # several edges at one box get ports spread over its width, in the order of the far end.
    by_key = {box.key: box for box in boxes}
    outs, ins = {}, {}
    for edge, chain in zip(edges, chains):
        outs.setdefault(edge.source, []).append((x[chain[1]], id(edge)))
        ins.setdefault(edge.target, []).append((x[chain[-2]], id(edge)))
    port_out, port_in = {}, {}
    for ports, table in ((outs, port_out), (ins, port_in)):
        for key, items in ports.items():
            items.sort()
            box = by_key[key]
            for i, (_, edge_id) in enumerate(items):
                table[edge_id] = box.x + STRIPE + (box.w - STRIPE) * (i + 1) / (len(items) + 1)
    for edge, chain in zip(edges, chains):
        source, target = by_key[edge.source], by_key[edge.target]
        points = [(port_out[id(edge)], source.y + source.h)]
        for dummy in chain[1:-1]:
            level = rank[dummy]
            level_height = max(heights.get(k, 0) for k in levels[level])
            centre = x[dummy] + shift + DUMMY_WIDTH / 2
            points += [(centre, top[level]), (centre, top[level] + level_height)]
        points.append((port_in[id(edge)], target.y))
        edge.points = points


def _place(desired, widths, anchor):
    """Positions as close to `desired` as the order and the gaps allow: box `anchor` gets
    its wish, the boxes left and right of it are packed outward from it."""
    placed = list(desired)
    for i in range(anchor - 1, -1, -1):
        placed[i] = min(desired[i], placed[i + 1] - widths[i] - GAP_X)
    for i in range(anchor + 1, len(desired)):
        placed[i] = max(desired[i], placed[i - 1] + widths[i - 1] + GAP_X)
    return placed


def _centre_of(neighbours, x, width, priority, default):
    """Where a box would like its centre: the mean centre of its most important neighbours
    (layers before removed layers before placeholders), so a long edge or a removed layer
    beside the main line does not pull it sideways."""
    if not neighbours:
        return default
    best = max(priority[k][0] for k, _ in neighbours)
    centres = [x[k] + width[k] / 2 for k, _ in neighbours if priority[k][0] == best]
    return sum(centres) / len(centres)


def _mean(weighted, default):
    total = sum(w for _, w in weighted)
    return sum(v * w for v, w in weighted) / total if total else default


def _cluster_rects(boxes, clusters) -> list:
    rects = []
    for path, label in clusters.items():
        members = [b for b in boxes if b.cluster[:len(path)] == path]
        if not members:
            continue
        pad = 14 - 3 * min(len(path) - 1, 3)
        x0 = min(b.x for b in members) - pad
        y0 = min(b.y for b in members) - pad - 16
        x1 = max(b.x + b.w for b in members) + pad
        y1 = max(b.y + b.h for b in members) + pad
        rects.append((label, x0, y0, x1 - x0, y1 - y0))
    return rects
