"""The argument parser: every option of every subcommand, and nothing that imports Keras."""
from __future__ import annotations

import argparse
import textwrap

from keras_rewrite.cli.commands import DEMO_OUTPUTS
from keras_rewrite.cli.pass_options import ALL_PASSES, add_pass_options
from keras_rewrite.cli.status import (EXIT_CODES_HELP, EXIT_DIFFERENT, EXIT_FINDINGS, EXIT_INPUT, EXIT_OK,
                     EXIT_OUTPUT, EXIT_REWRITE, EXIT_USAGE, UsageError)
from keras_rewrite.cli.terminal import PROG

OUTPUTS_HELP = """\
outputs:
  one input      -o OUT.keras, or -o an existing folder
  several inputs, or a FOLDER as input (its *.keras and *.h5 files, sorted, not recursive):
                 -o is a folder, created if missing; each output keeps its input's name
                 with the suffix .keras (models/a.keras -> OUT/a.keras, b.h5 -> OUT/b.keras);
                 one line per input, then a summary; one bad input does not stop the others
  --in-place     each input is replaced (through a checked temporary file)
  --dry-run      nothing is written (without -o; with -o, the outputs are only planned)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (UsageError) instead of usage + message."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _para(text: str) -> str:
    """A paragraph wrapped for the terminal (RawDescriptionHelpFormatter keeps the epilog's
    tables as written, so it does not wrap descriptions either)."""
    return textwrap.fill(text, width=88)


def positive_int(text: str) -> int:
    """A count from the command line: a whole number >= 1.

    >>> positive_int("2")
    2
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a whole number >= 1 such as 4; received '0'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or value > 1024:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 such as 4; received "
                                         f"{text!r}")
    return value


# What keras_rewrite.analysis.picture writes (tests/test_picture.py checks the two agree); checked
# here so that a wrong suffix is a usage error before Keras is imported.
PICTURE_SUFFIXES = (".svg", ".html", ".htm", ".dot", ".gv")
PICTURE_HELP = ("(.svg; .html: with a list of the changes, zoom and pan; .dot: Graphviz text); "
                "self-contained, no Graphviz needed")


def picture_path(text: str) -> str:
    """A --picture FILE: its suffix must be one keras_rewrite.analysis.picture writes.

    >>> picture_path("diff.html")
    'diff.html'
    >>> picture_path("diff.png")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a name ending in .svg, .html, .htm, .dot or .gv; \
received 'diff.png' (PNG is not drawn: open the .svg or .html in a browser)
    """
    import os

    suffix = os.path.splitext(text)[1].lower()
    if suffix not in PICTURE_SUFFIXES:
        hint = (f" ({suffix[1:].upper()} is not drawn: open the .svg or .html in a browser)"
                if suffix else "")
        raise argparse.ArgumentTypeError(
            f"expected a name ending in {', '.join(PICTURE_SUFFIXES[:-1])} or "
            f"{PICTURE_SUFFIXES[-1]}; received {text!r}{hint}")
    return text


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("keras-rewrite")
    except metadata.PackageNotFoundError:
        return "unknown"


def limit_number(kind):
    """A --max-* value: a number > 0 (`kind` int or float).

    >>> limit_number(int)("200000"), limit_number(float)("0.5")
    (200000, 0.5)
    >>> limit_number(int)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a whole number > 0 such as 200000; received '0'
    """
    def parse(text: str):
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            what = "a whole number > 0 such as 200000" if kind is int else "a number > 0 such as 256"
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


# keras_rewrite.files.model_files.FileLimits's defaults (not imported here: it imports Keras;
# tests/test_cli.py checks the two agree) and each limit's flag.
LIMIT_DEFAULTS = {"max_config_mb": 64, "max_config_depth": 100, "max_layers": 50_000}
LIMIT_FLAGS = {name: "--" + name.replace("_", "-") for name in LIMIT_DEFAULTS}


def _add_limit_options(parser) -> None:
    group = parser.add_argument_group(
        "limits", "what is read of a .keras file before Keras loads it; a file past a limit is "
                  "refused (exit status 3) and never reaches Keras")
    group.add_argument(LIMIT_FLAGS["max_config_mb"], metavar="MB", type=limit_number(float),
                       help=f"largest config.json in MiB (default "
                            f"{LIMIT_DEFAULTS['max_config_mb']}; real models take about 1 KB "
                            "per layer; Keras needs about 3x it in memory to load)")
    group.add_argument(LIMIT_FLAGS["max_config_depth"], metavar="N", type=limit_number(int),
                       help="deepest nesting of objects and arrays in config.json (default "
                            f"{LIMIT_DEFAULTS['max_config_depth']}; ResNet50: 9)")
    group.add_argument(LIMIT_FLAGS["max_layers"], metavar="N", type=limit_number(int),
                       help="most layers in config.json, nested models included (default "
                            f"{LIMIT_DEFAULTS['max_layers']:,})")


def _add_load_options(parser) -> None:
    _add_limit_options(parser)
    group = parser.add_argument_group("loading")
    group.add_argument("--unsafe", action="store_true",
                       help="load with safe_mode=False: allow Lambda layers stored as Python "
                            "bytecode and legacy .h5 files. Only for files you trust: loading "
                            "them can run code")
    group.add_argument("--custom-objects", metavar="MODULE", action="append", default=[],
                       help="import MODULE (a dotted name, or a path to a .py file) before "
                            "loading, so that the custom layers it registers with "
                            "keras.saving.register_keras_serializable can be loaded; repeatable")
    _add_verbose(parser)


def _add_verbose(parser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="per-layer detail, Keras warnings, timings, and tracebacks on "
                             "errors")


def _add_format(parser, what: str) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help=f"text (default), or json: one JSON object per {what} on stdout "
                             "(errors still one line each on stderr)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (no Keras needed to build or run it)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog=PROG, formatter_class=formatter,
                    description=_para("Rewrite built Keras 3 models through a networkx graph, "
                                      "keeping their weights: add L2 regularization, swap "
                                      "Dropout for SpatialDropout, reorder Conv/BN/activation/"
                                      "pool/dropout blocks; lint and inspect model files."),
                    epilog=EXIT_CODES_HELP + "\nStart with: keras-rewrite demo")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    convert = sub.add_parser(
        "convert", formatter_class=formatter, help="rewrite model files",
        description=_para("Rewrite .keras model files with passes, print what changed (per "
                          "pass, on how many layers; weights carried over or re-initialized, "
                          "output shapes, inference outputs on a random batch) and write the "
                          "result atomically: a temporary file in the destination folder, "
                          "reloaded and checked, then given its name. Inputs are never "
                          "overwritten without --in-place, existing outputs (models and "
                          "pictures) never without --force."),
        epilog=OUTPUTS_HELP + "\n" + EXIT_CODES_HELP)
    convert.add_argument("inputs", nargs="+", metavar="IN",
                         help="a .keras file or a folder of them")
    convert.add_argument("-o", "--output", metavar="OUT",
                         help="output file (one input) or folder (several inputs)")
    convert.add_argument("-j", "--jobs", metavar="N", type=positive_int, default=1,
                         help="convert several inputs in N worker processes (default 1: one "
                              "after the other in this process); results print in input order")
    add_pass_options(convert)
    group = convert.add_argument_group("writing")
    group.add_argument("--dry-run", action="store_true",
                       help="rewrite and report, write no model file")
    group.add_argument("--force", action="store_true",
                       help="overwrite an existing OUT (and --picture FILE)")
    group.add_argument("--in-place", action="store_true",
                       help="replace each input by its rewritten model (atomically)")
    group.add_argument("--picture", "--diff-svg", metavar="FILE", type=picture_path,
                       dest="picture",
                       help="draw what changed: the rewritten graph with added, removed, "
                            "moved and changed layers marked, unchanged runs collapsed "
                            + PICTURE_HELP)
    _add_format(convert, "input")
    _add_load_options(convert)

    lint_parser = sub.add_parser(
        "lint", formatter_class=formatter,
        help="explain problems in a model (layer order, regularization, export) and fix them",
        description=_para("Lint a model: layer orders and settings that work against it "
                          "(the seed answers' rules, regularization and the optimizer's "
                          "weight decay; with --profile inference, what to fold or strip "
                          "before export), each explained, with the pass that fixes it. "
                          "--fix applies those passes and writes the fixed model like "
                          "convert does (atomically, reloaded and checked); --diff shows "
                          "what --fix would change and writes nothing."),
        epilog=f"exit status: {EXIT_OK} no findings (with --fix: none left after the fix), "
               f"{EXIT_FINDINGS} findings (with --fix: some that no pass fixes remain), "
               f"{EXIT_USAGE} usage error, {EXIT_INPUT} input unreadable or invalid, "
               f"{EXIT_REWRITE} the model's graph could not be read or the fix failed, "
               f"{EXIT_OUTPUT} the fixed model could not be written")
    lint_parser.add_argument("input", metavar="IN", help="a .keras file")
    lint_parser.add_argument("--brief", action="store_true",
                             help="one line per finding, without the explanation")
    lint_parser.add_argument("--profile", choices=("training", "inference"),
                             default="training",
                             help="training (default): layer order and regularization rules; "
                                  "inference: BatchNormalization to fold and training-only "
                                  "layers to strip before export")
    lint_parser.add_argument("--ignore", metavar="RULE[,RULE...]", action="append",
                             help="leave these rules out (their findings and their fixes), "
                                  "e.g. --ignore weight-decay-on-bias-or-norm; repeatable")
    fixing = lint_parser.add_argument_group("fixing")
    fixing.add_argument("--fix", action="store_true",
                        help="apply the passes that fix the findings (each once, in a fixed "
                             "order) and write the result to -o OUT")
    fixing.add_argument("--diff", action="store_true",
                        help="show what --fix would change, pass by pass and layer by layer; "
                             "write nothing")
    fixing.add_argument("-o", "--output", metavar="OUT",
                        help="where --fix writes the fixed model (.keras)")
    fixing.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    fixing.add_argument("--in-place", action="store_true",
                        help="with --fix: replace IN by the fixed model (atomically)")
    _add_format(lint_parser, "model")
    _add_load_options(lint_parser)

    inspect_parser = sub.add_parser(
        "inspect", formatter_class=formatter,
        help="summarize a model and where each pass would act",
        description=_para("Summarize a model file: layer calls by class, nested models, and "
                          "where each pass would act (the passes run on the graph only; "
                          "nothing is rebuilt or written). Without pass options, the passes "
                          f"{', '.join(ALL_PASSES)} with their defaults."),
        epilog=f"exit status: {EXIT_OK} success, {EXIT_USAGE} usage error, {EXIT_INPUT} input "
               f"unreadable or invalid, {EXIT_REWRITE} the model's graph could not be read "
               f"(unexpected error), {EXIT_OUTPUT} picture not written")
    inspect_parser.add_argument("input", metavar="IN", help="a .keras file")
    inspect_parser.add_argument("--picture", "--svg", metavar="FILE", type=picture_path,
                                dest="picture", help="draw the graph " + PICTURE_HELP)
    inspect_parser.add_argument("--force", action="store_true",
                                help="overwrite an existing --picture FILE")
    add_pass_options(inspect_parser)
    _add_load_options(inspect_parser)

    diff_parser = sub.add_parser(
        "diff", formatter_class=formatter,
        help="what changed between two model files, layer by layer",
        description=_para("Compare two model files layer by layer (matched by name; layers "
                          "inside nested models as outer/inner): added, removed, moved (its "
                          "inputs changed), config changed (each key, old -> new), weights "
                          "changed (each weight's largest absolute difference, or its new "
                          "shape). Nothing is rewritten; only --picture writes a file."),
        epilog=f"exit status: {EXIT_OK} identical, {EXIT_DIFFERENT} the models differ (as "
               f"diff(1) and black --check), {EXIT_USAGE} usage error, {EXIT_INPUT} an input "
               f"unreadable or invalid, {EXIT_REWRITE} a model's graph could not be read "
               f"(unexpected error), {EXIT_OUTPUT} picture not written")
    diff_parser.add_argument("old", metavar="A", help="the model before (a .keras file)")
    diff_parser.add_argument("new", metavar="B", help="the model after (a .keras file)")
    diff_parser.add_argument("--picture", metavar="FILE", type=picture_path,
                             help="draw the diff " + PICTURE_HELP)
    diff_parser.add_argument("--force", action="store_true",
                             help="overwrite an existing --picture FILE")
    diff_parser.add_argument("--no-collapse", action="store_true",
                             help="in the picture, draw every unchanged layer (by default runs "
                                  "of unchanged layers are one box)")
    _add_format(diff_parser, "comparison")
    _add_load_options(diff_parser)

    sub.add_parser("passes", formatter_class=formatter,
                   help="list the registered passes, their options and defaults",
                   description=_para("List every registered pass (built in, and third-party "
                                     "ones from the 'keras_rewrite.passes' entry points): its "
                                     "short name for --pass and --passes files, its options "
                                     "with their defaults, whether it can act on a live model "
                                     "and whether it keeps inference outputs."))

    demo = sub.add_parser(
        "demo", formatter_class=formatter,
        help="convert the two bundled seed models with all three passes",
        description=_para("Convert the two bundled seed models (keras_rewrite/data/, random "
                          "weights) with the passes "
                          f"{', '.join(ALL_PASSES)} and print each report: the seed U-Net "
                          "(64x64x3), where L2 regularizes every kernel, and the seed CNN "
                          "(32x32x3) in the order the seed answer advises against, where L2, "
                          "SpatialDropout and ReorderBlocks all change something. Writes "
                          f"{' and '.join(DEMO_OUTPUTS)} in the current folder."),
        epilog=EXIT_CODES_HELP)
    demo.add_argument("-o", "--output", metavar="FOLDER",
                      help="an existing folder to write the results into (default: the "
                           "current folder)")
    demo.add_argument("--force", action="store_true", help="overwrite existing results")
    demo.add_argument("--picture", "--diff-svg", metavar="FILE", type=picture_path,
                      dest="picture", help="draw what changed in the seed CNN " + PICTURE_HELP)
    _add_format(demo, "model")
    _add_verbose(demo)
    return parser
