"""Regenerate the models `keras-rewrite demo` converts, in keras_rewrite/data/.

    python examples/make_bundled_model.py [--out FOLDER] [--check]

- ``seed_unet.keras``: the seed U-Net (seed_models.build_unet) at 64x64x3, compiled as its
  asker compiled it. Its input scaling calls the registered function
  `keras_rewrite.files.demo_layers.divide_by_255` instead of the seed's ``lambda x: x / 255``, so
  the file loads with ``safe_mode=True``. Only the L2 pass has something to do in it.
- ``seed_cnn.keras``: the second seed's CNN in the order its asker proposed and the answer
  advises against (cnn_spatial_dropout.build_proposed_cnn: Conv -> Dropout -> BatchNorm ->
  Activation -> MaxPooling), 32x32x3, 10 classes: L2 regularizes its kernels, SpatialDropout
  replaces its Dropout on feature maps, ReorderBlocks moves each dropout after the pooling.

Both have random weights from a fixed seed. Each archive is normalized so that running this script
again writes the same bytes: fixed zip timestamps and a fixed ``date_saved`` in
metadata.json (Keras stamps the current time into both), and the ``shared_object_id``s in
config.json (Python object ids) renumbered in order of appearance. ``--check`` regenerates into a
temporary folder and exits 1 if a file differs from the bundled one.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import zipfile

import keras_rewrite  # noqa: F401  (quiets TensorFlow before it loads)
import keras

from cnn_spatial_dropout import build_proposed_cnn
from keras_rewrite.files.demo_layers import divide_by_255
from seed_models import build_unet

SEED = 0
REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO / "keras_rewrite" / "data"
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can hold
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


# file name -> how to build it
BUNDLED = {
    "seed_unet.keras": lambda: build_unet((64, 64, 3), scale=divide_by_255),
    "seed_cnn.keras": lambda: build_proposed_cnn((32, 32, 3), num_classes=10),
}


def build_model(name: str) -> keras.Model:
    """The bundled model `name` with reproducible random weights and layer names."""
    # Keras numbers automatic layer names per process (conv2d, conv2d_1, ...): start afresh,
    # so that a process which built other models first writes the same file.
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    return BUNDLED[name]()


def normalize_archive(path: pathlib.Path) -> None:
    """Rewrite the .keras zip at `path` with fixed timestamps, entries in a fixed order."""
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: (info.compress_type, archive.read(info.filename))
                   for info in archive.infolist()}
    metadata = json.loads(entries["metadata.json"][1])
    metadata["date_saved"] = FIXED_DATE_SAVED
    entries["metadata.json"] = (entries["metadata.json"][0],
                                json.dumps(metadata, sort_keys=True).encode())
    config = json.loads(entries["config.json"][1])
    entries["config.json"] = (entries["config.json"][0],
                              json.dumps(_renumber_shared_objects(config, {})).encode())
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(entries):
            compress_type, data = entries[name]
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.compress_type = compress_type
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _renumber_shared_objects(node, ids: dict):
    """Replace each ``shared_object_id`` (an `id()`, different in every run) by 1, 2, ...

    Keras only compares these ids with each other, to restore objects shared between layers,
    so a consistent renumbering keeps the meaning.
    """
    if isinstance(node, dict):
        return {key: (ids.setdefault(value, len(ids) + 1) if key == "shared_object_id"
                      else _renumber_shared_objects(value, ids))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_objects(value, ids) for value in node]
    return node


def write(name: str, out: pathlib.Path) -> None:
    model = build_model(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=out.parent)
    os.close(fd)
    try:
        model.save(tmp)
        normalize_archive(pathlib.Path(tmp))
        keras.saving.load_model(tmp, safe_mode=True)  # the whole point: it loads safely
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DATA,
                        help=f"the folder to write into (default {DATA})")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if regenerating would change a bundled file")
    args = parser.parse_args(argv)
    if args.check:
        differing = 0
        with tempfile.TemporaryDirectory() as folder:
            for name in BUNDLED:
                fresh, bundled = pathlib.Path(folder) / name, args.out / name
                write(name, fresh)
                same = bundled.exists() and fresh.read_bytes() == bundled.read_bytes()
                differing += not same
                print(f"{bundled}: {'up to date' if same else 'DIFFERS from a fresh build'}")
        return 0 if differing == 0 else 1
    for name in BUNDLED:
        out = args.out / name
        write(name, out)
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
