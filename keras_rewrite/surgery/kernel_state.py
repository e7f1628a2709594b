"""What a channel edit of a Dense or Conv kernel must also edit: the variables quantization and
LoRA keep beside the kernel (Keras 3.15's layouts, measured), and which edits are refused.

A kernel's input channels are its axis -2, its output channels axis -1. Beside the kernel:

- int8 (Dense): ``kernel`` int8 (in, out), ``kernel_scale`` (out,), one scale per output
  channel. Deleting channels is `np.delete` on both: the kept weights' integers and scales
  are the same (its activations are quantized at each call over the channels it receives,
  as Keras's int8 Dense always does).
- int4 (Dense): ``kernel`` packs two *output* columns per int8 (in, ceil(out/2)) (Keras's
  `quantizers.pack_int4`); ``kernel_scale`` is (out,), or (groups, out) with ``kernel_zero``
  (groups, out) and ``g_idx`` (in,), each input row's group, when quantized by blocks of
  input rows. Output channels: the kernel is unpacked, its columns deleted, packed again;
  the scales and zeros lose those columns. Input channels: kernel rows and ``g_idx``
  entries go; refused when the rebuilt layer would count another number of groups.
- float8: the kernel stays float; its scales and amax histories are per tensor (scalars):
  nothing else to edit.
- LoRA: ``lora_kernel_a`` (..., in, rank) follows the kernel's input axis, ``lora_kernel_b``
  (rank, out) its output axis; the kernel plus ``alpha/rank * a @ b`` is then the edited
  kernel, and the adapters stay trainable as they were.
- gptq and any quantization mode not listed, or a variable not listed: refused, naming it.

New input channels (`set_input_channels`) on a quantized kernel are refused: their values
would need new integers and scales (int8, int4) or could leave float8's stored scale range.
`rewrite(model, [SetInputChannels(...), "quantize"])` edits the float kernel, then quantizes.
"""
from __future__ import annotations

import math

import keras
import numpy as np

INPUT_AXIS = ("kernel", "lora_kernel_a")  # axis -2: what new input channels adapt

# Labels of the variables each layout holds (besides bias and LoRA's): anything else is refused.
_KNOWN = {None: {"kernel"}, "int8": {"kernel", "kernel_scale"},
          "int4": {"kernel", "kernel_scale", "kernel_zero", "g_idx"},
          "float8": {"kernel", "inputs_scale", "inputs_amax_history", "kernel_scale",
                     "kernel_amax_history", "outputs_grad_scale", "outputs_grad_amax_history"}}
_LORA = {"lora_kernel_a", "lora_kernel_b"}


def mode_of(spec):
    return getattr(spec.source, "quantization_mode", None)


def refusal(spec, weights: dict, *, d_in=(), new_inputs: str | None = None) -> str | None:
    """Why the kernel of `spec` (its layer's arrays by label: `weights`) cannot lose input
    channels `d_in` (and output channels), or get new input channels made by rule
    `new_inputs`; None when it can."""
    mode = mode_of(spec)
    if mode not in _KNOWN:
        return (f"it is quantized '{mode}', whose variables surgery does not know how to edit "
                "exactly; edit the float model, then quantize")
    if mode is not None and new_inputs:
        return (f"it is quantized '{mode}': new input channels (how={new_inputs!r}) would need "
                "new quantized values and scales; edit the float model, then quantize "
                "(rewrite(model, [SetInputChannels(...), 'quantize']))")
    unknown = set(weights) - _KNOWN[mode] - _LORA - {"bias"}
    if unknown:
        return (f"it holds variables {sorted(unknown)}, which surgery does not know how to "
                "edit with its kernel")
    if mode == "int4" and len(d_in) and "g_idx" in weights:
        # By blocks: g_idx[i] = i // block, so the block is the count of rows in group 0.
        rows, groups = len(weights["g_idx"]), np.shape(weights["kernel_scale"])[0]
        block = int(np.sum(np.asarray(weights["g_idx"]) == 0))
        after = math.ceil((rows - len(d_in)) / block)
        if groups > 1 and after != groups:
            return (f"it is quantized 'int4' by blocks of {block} input rows in {groups} "
                    f"groups; without {len(d_in)} of its {rows} inputs it would have {after} "
                    "groups, and its scales could not be kept; edit the float model, then "
                    "quantize")
    return None


def deleted(spec, weights: dict, d_in, d_out) -> dict:
    """{label: array} of the kernel of `spec` and the variables beside it, with input channels
    `d_in` and output channels `d_out` deleted (only the arrays that change). `weights` are
    the layer's arrays by label; call `refusal` first."""
    mode = mode_of(spec)
    new = {}

    def cut(label, idx, axis):
        if label in weights and len(idx):
            new[label] = np.delete(new.get(label, weights[label]), list(idx), axis=axis)

    if mode == "int4":
        units = weights["kernel_scale"].shape[-1]
        kernel = keras.ops.convert_to_numpy(
            keras.quantizers.unpack_int4(weights["kernel"], units, axis=-1))
        kernel = np.delete(np.delete(kernel, list(d_in), axis=-2), list(d_out), axis=-1)
        packed, _, _ = keras.quantizers.pack_int4(kernel, axis=-1)
        new["kernel"] = keras.ops.convert_to_numpy(packed).astype(weights["kernel"].dtype)
        cut("g_idx", d_in, 0)
        for label in ("kernel_scale", "kernel_zero"):
            cut(label, d_out, -1)
    else:
        cut("kernel", d_in, -2)
        cut("kernel", d_out, -1)
        if mode == "int8":
            cut("kernel_scale", d_out, -1)
    cut("lora_kernel_a", d_in, -2)
    cut("lora_kernel_b", d_out, -1)
    cut("bias", d_out, 0)
    return new
