"""The ``keras-rewrite`` command line, a thin face over the `keras_rewrite` library.

It lives beside the package, not inside it, so that ``keras-rewrite --help``, ``--version``
and every usage error answer without importing TensorFlow: importing ``keras_rewrite`` loads
Keras and TensorFlow (about 2.5 s); this package imports it only when a model is touched.

Modules, one idea each:

- `entry`: ``main(argv)`` and the console script's ``run()`` (safe ``sys.path``, signals);
- `arguments`: the argument parser and its value types;
- `pass_options`: the pass options, declared once (`PASS_OPTIONS`), and ``--passes`` files;
- `status`: exit statuses (a documented contract) and the usage/failure exceptions;
- `batch`: inputs and where their outputs go, and the run over them with one summary;
- `commands`: ``convert``, ``lint``, ``inspect``, ``demo``;
- `terminal`: what people read: error lines, the grouped report, progress, JSON.
"""
