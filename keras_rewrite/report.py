"""What a rewrite did, per pass and per layer, readable from Python and printable as a table."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Change:
    """One thing a pass changed (or deliberately left alone) at one layer."""

    layer: str
    action: str  # e.g. "added_regularizer", "replaced", "moved", "skipped"
    detail: str = ""


@dataclasses.dataclass
class PassResult:
    """What one pass did. `modified` is False when there was nothing to do."""

    pass_name: str
    modified: bool
    changes: list = dataclasses.field(default_factory=list)
    outputs_unchanged: bool | None = True  # are inference outputs provably the same?

    @property
    def changed_layers(self) -> list[str]:
        return [c.layer for c in self.changes if c.action != "skipped"]

    @property
    def skipped(self) -> list[Change]:
        return [c for c in self.changes if c.action == "skipped"]


@dataclasses.dataclass
class LayerWeights:
    """Where each weight of one rebuilt layer came from."""

    layer: str
    class_name: str
    carried: list = dataclasses.field(default_factory=list)  # weight names copied over
    new: list = dataclasses.field(default_factory=list)  # (weight name, why it is new)
    dropped: list = dataclasses.field(default_factory=list)  # (weight name, why it was dropped)
    transformed: list = dataclasses.field(default_factory=list)  # weight names a pass computed
    # How the layer's state came over: "state" (Keras's per-layer save/load protocol: variables,
    # derived state, assets), "by name" (variable by variable, the layer's build changed) or
    # "object copy: <why>" (the layer's config cannot re-create it; copied from the object).
    how: str = "state"


@dataclasses.dataclass
class Report:
    """Everything `rewrite_with_report` did: passes in order, then per-layer weights."""

    passes: list = dataclasses.field(default_factory=list)
    layers: dict = dataclasses.field(default_factory=dict)  # name -> LayerWeights
    notes: list = dataclasses.field(default_factory=list)  # model-level decisions, one line each

    def layer(self, name: str) -> LayerWeights:
        return self.layers[name]

    @property
    def weights_carried(self) -> int:
        return sum(len(lw.carried) for lw in self.layers.values())

    @property
    def weights_new(self) -> int:
        return sum(len(lw.new) for lw in self.layers.values())

    @property
    def weights_dropped(self) -> int:
        return sum(len(lw.dropped) for lw in self.layers.values())

    @property
    def outputs_unchanged(self) -> bool | None:
        """True when every pass kept inference outputs provably the same."""
        verdicts = [p.outputs_unchanged for p in self.passes if p.modified]
        if any(v is False for v in verdicts):
            return False
        if any(v is None for v in verdicts):
            return None
        return True

    def summary(self) -> str:
        changed = sum(len(p.changed_layers) for p in self.passes)
        return (f"{len(self.layers)} layers rebuilt; weights: {self.weights_carried} carried "
                f"over, {self.weights_new} new, {self.weights_dropped} dropped; "
                f"{changed} layer changes by {len(self.passes)} passes")

    def table(self, only_changed: bool = False) -> str:
        """A plain-text table: one line per layer, then one per pass change."""
        rows = [("layer", "class", "carried", "new", "dropped")]
        for lw in self.layers.values():
            if only_changed and not (lw.new or lw.dropped):
                continue
            rows.append((lw.layer, lw.class_name, str(len(lw.carried)),
                         _join(lw.new), _join(lw.dropped)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
                 for r in rows]
        lines.insert(1, "-" * (sum(widths) + 8 + 7))
        for result in self.passes:
            state = "modified" if result.modified else "unchanged"
            lines.append(f"pass {result.pass_name}: {state}")
            for c in result.changes:
                lines.append(f"  {c.layer}: {c.action}{' - ' + c.detail if c.detail else ''}")
        for lw in self.layers.values():
            if lw.how.startswith("object copy"):
                lines.append(f"{lw.layer}: carried by {lw.how}")
        lines.extend(self.notes)
        lines.append(self.summary())
        return "\n".join(lines)


def _join(pairs) -> str:
    return ", ".join(f"{name} ({why})" for name, why in pairs) or "-"
