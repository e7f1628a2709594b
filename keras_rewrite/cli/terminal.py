"""What people read: one-line errors, the grouped report, progress, JSON.

Library messages say what to do in library terms (``safe_mode=False``, ``overwrite=True``);
`error_line` swaps in this command line's flags (`CLI_WORDS`) and keeps any message on one
line. Nothing here imports Keras.
"""
from __future__ import annotations

import json
import re
import sys

PROG = "keras-rewrite"

# Library wording -> command-line wording (the library's constants hold the left side:
# model_files.UNSAFE_HINT, model_files.CUSTOM_OBJECTS_HINT, atomic_save.OVERWRITE_HINT,
# errors.BUG_HINT).
CLI_WORDS = (
    ("load it with safe_mode=False if you trust this file", "pass --unsafe if you trust this file"),
    ("legacy files also need safe_mode=False", "legacy files also need --unsafe"),
    ("a module imported before loading (custom objects)",
     "a module given with --custom-objects MODULE"),
    ("pass overwrite=True to replace it", "pass --force to overwrite it"),
    ("report it as a bug", "rerun with --verbose and report it"),
    ("refusing to overwrite the input", "refusing to overwrite the input (pass --in-place to "
                                        "replace it)"),
    # model_files.LIMIT_HINTS
    *((f"raise it with limits=FileLimits({name}=N)", f"raise it with --{name.replace('_', '-')} "
       "N") for name in ("max_config_mb", "max_config_depth", "max_layers")),
)


def cli_words(message: str) -> str:
    """`message` with the library's wording replaced by this command line's flags.

    >>> cli_words("m.keras: already exists; pass overwrite=True to replace it")
    'm.keras: already exists; pass --force to overwrite it'
    """
    for library, cli in CLI_WORDS:
        message = message.replace(library, cli)
    return message


def error_line(message: str) -> str:
    """``keras-rewrite: error: MESSAGE`` on one line, whatever MESSAGE holds."""
    return f"{PROG}: error: {' '.join(cli_words(str(message)).split())}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


_NUMBERED = re.compile(r"(.*?)_(\d+)$")


def compress_names(names, limit: int = 8) -> str:
    """Layer names with numbered runs compressed, in first-seen order.

    >>> compress_names(["conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "dense", "bn_7"])
    'conv2d … conv2d_3, dense, bn_7'
    """
    groups: dict[str, list] = {}
    for name in dict.fromkeys(names):
        found = _NUMBERED.fullmatch(name)
        base, number = (found.group(1), int(found.group(2))) if found else (name, 0)
        groups.setdefault(base, []).append((number, name))
    parts = []
    for members in groups.values():
        members.sort()
        run = [members[0]]
        for member in members[1:]:
            if member[0] == run[-1][0] + 1:
                run.append(member)
            else:
                parts.append(_run(run))
                run = [member]
        parts.append(_run(run))
    shown = ", ".join(parts[:limit])
    return shown + (f", ... ({len(parts) - limit} more)" if len(parts) > limit else "")


def _run(run) -> str:
    if len(run) == 1:
        return run[0][1]
    if len(run) == 2:
        return f"{run[0][1]}, {run[1][1]}"
    return f"{run[0][1]} … {run[-1][1]}"


def pass_lines(result, verbose: bool = False, indent: str = "") -> list[str]:
    """What one pass did, grouped: per kind of change, on how many layers, which (names
    compressed), and the shared detail; every layer's own line when `verbose`."""
    name = result.pass_name
    if not result.modified and not result.changes:
        return [f"{indent}{name}: unchanged (nothing to do in this model)"]
    lines = [f"{indent}{name}: " + ("modified" if result.modified else "unchanged")]
    by_action: dict[str, list] = {}
    for change in result.changes:
        by_action.setdefault(change.action, []).append(change)
    for action, changes in by_action.items():
        layers = [c.layer for c in changes]
        details = {c.detail for c in changes if c.detail}
        shared = f" ({details.pop()})" if len(details) == 1 and len(changes) > 1 else ""
        words = action.replace("_", " ")
        lines.append(f"{indent}  {words} on {plural(len(layers), 'layer')}: "
                     f"{compress_names(layers)}{shared}")
        if verbose or (len(changes) <= 3 and not shared):
            for c in changes:
                if c.detail:
                    lines.append(f"{indent}    {c.layer}: {c.detail}")
    return lines


def report_lines(report, verbose: bool) -> list[str]:
    """The grouped report of a conversion: per pass what changed, then weights (per layer
    only where weights are new or dropped, every layer when `verbose`)."""
    lines = ["passes:"] if report.passes else ["no passes given: the output is an exact copy"]
    for result in report.passes:
        lines.extend(pass_lines(result, verbose, "  "))
    lines.append(f"weights: {report.weights_carried} carried over, {report.weights_new} "
                 f"re-initialized, {report.weights_dropped} dropped")
    for lw in report.layers.values():
        if verbose or lw.new or lw.dropped:
            parts = [f"{len(lw.carried)} carried"]
            if lw.new:
                parts.append("new: " + ", ".join(f"{n} ({why})" for n, why in lw.new))
            if lw.dropped:
                parts.append("dropped: " + ", ".join(f"{n} ({why})" for n, why in lw.dropped))
            if lw.how != "state":
                parts.append(f"by {lw.how}")
            lines.append(f"  {lw.layer} ({lw.class_name}): {'; '.join(parts)}")
        elif lw.how.startswith("object copy"):
            lines.append(f"  {lw.layer}: carried by {lw.how}")
    lines.extend(f"note: {note}" for note in report.notes)
    return lines


def json_line(record: dict) -> str:
    """One JSON object on one line."""
    return json.dumps(record, sort_keys=False, default=str)


class Progress:
    """Batch progress on stderr when it is a terminal: a bar (tqdm; a one-line counter
    without it). Elsewhere (a log file, CI) the per-input result lines on stdout are the
    progress, plain lines, and stderr holds only errors."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.total = total
        self.bar = None
        self.enabled = enabled and total > 1
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        if self.enabled and self.tty:
            try:
                from tqdm import tqdm
            except ImportError:  # a plain counter then
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, file=self.stream, unit="model", leave=False,
                                dynamic_ncols=True)

    def start(self, index: int, label: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description_str(label[-40:])
        elif self.tty:
            self.stream.write(f"\r\x1b[K[{index}/{self.total}] {label} ...")
            self.stream.flush()

    def finish_one(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def clear(self) -> None:
        """Before printing a line: the bar or counter out of the way."""
        if self.bar is not None:
            self.bar.clear()
        elif self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
