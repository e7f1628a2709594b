"""The ``keras-rewrite`` command line, a thin face over the library.

Importing it costs nothing heavy: ``keras-rewrite --help``, ``--version`` and every usage error
answer without importing TensorFlow, Keras or JAX; the library is imported when a model is
touched.

Modules, one idea each:

- `entry`: ``main(argv)`` and the console script's ``run()`` (safe ``sys.path``, signals);
- `arguments`: the argument parser and its value types;
- `pass_options`: the pass options, read from the pass registry, and ``--passes`` files;
- `status`: exit statuses (a documented contract) and the usage/failure exceptions;
- `batch`: inputs and where their outputs go, and the run over them with one summary;
- `commands`: ``convert``, ``lint``, ``inspect``, ``diff``, ``passes``, ``demo``;
- `one_file`: what the commands do with one file (load, convert, draw its diff);
- `parallel`: ``convert --jobs N`` in worker processes;
- `terminal`: what people read: error lines, the grouped report, progress, JSON.
"""


def main(argv=None) -> int:
    """Run the command line on `argv` (default: ``sys.argv[1:]``); return the exit status."""
    from keras_rewrite.cli.entry import main as _main

    return _main(argv)


def run() -> None:
    """The console script: `main` on ``sys.argv``, then exit with its status."""
    from keras_rewrite.cli.entry import run as _run

    _run()
