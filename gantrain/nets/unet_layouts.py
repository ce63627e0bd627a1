"""pytorch-CycleGAN-and-pix2pix's ``UnetGenerator`` files (pix2pix's ``latest_net_G.pth``) as ``unet_generator``
weights.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) nests one
``UnetSkipConnectionBlock`` per level: the outermost holds the next at index 1 of its Sequential, every middle
one at index 3, so level L's layers are ``model.model.`` + ``1.model.`` + ``3.model.`` x (L - 1) + their index.
The outermost has (down conv 0, inner 1, ReLU, up conv 3, tanh); a middle one (LeakyReLU, down conv 1, norm 2,
inner 3, ReLU, up conv 5, norm 6[, dropout]); the innermost (LeakyReLU, down conv 1, ReLU, up conv 3, norm 4).
gantrain keeps the same layers as a flat encoder and decoder (innermost first).

Structural differences: each decoder layer after the innermost sees the concatenation (skip, decoder output)
in the reference and (decoder output, skip) in gantrain, so the two halves of those transposed convolutions'
input channels are exchanged on loading. The reference's in-place LeakyReLU also changes the tensor a block
concatenates as its skip, but a ReLU follows every concatenation and ReLU(LeakyReLU(x)) = ReLU(x): no effect.
The reference puts dropout after the decoder layers of the ``num_downs - 5`` blocks above the innermost one,
gantrain after the first ``dropout_layers`` decoder layers counted from the bottleneck (the paper's
CD512-CD512-CD512); dropout has no weights and is off in eval mode, so the weights and eval-mode outputs are the
same, but ``model.test_mode=train`` outputs differ from the reference's.
"""

from __future__ import annotations

import re

import torch

from gantrain.nets.weight_layout import Implied, State, WeightLayout, has_keys, is_norm_buffer, register_layout

NETWORK = "unet_generator"
KEY = re.compile(r"model\.model\.((?:[13]\.model\.)*)(\d+)\.(.+)")  # a level's prefix: its submodule index per level
# (outermost, middle, innermost) -> {index in the block's Sequential: gantrain's (part, index in its Sequential)}
ENCODER, DECODER = "encoder", "decoder"
PLACES = {"outer": {0: (ENCODER, 0), 3: (DECODER, 1)},
          "middle": {1: (ENCODER, 1), 2: (ENCODER, 2), 5: (DECODER, 1), 6: (DECODER, 2)},
          "inner": {1: (ENCODER, 1), 3: (DECODER, 1), 4: (DECODER, 2)}}


def _levels(state: State) -> int:
    return 1 + max((m.group(1).count("model.") for m in map(KEY.fullmatch, state) if m), default=-1)


def swapped_halves(weight: torch.Tensor) -> torch.Tensor:
    """A transposed convolution's input channels (dim 0) with its two halves exchanged: the reference concatenates
    (skip, decoder output), gantrain (decoder output, skip); both halves are equally wide."""
    half = weight.shape[0] // 2
    return torch.cat([weight[half:], weight[:half]], dim=0)


def _convert(state: State) -> State:
    depth = _levels(state)
    out: State = {}
    for key, tensor in state.items():
        match = KEY.fullmatch(key)
        if match:
            level, index = match.group(1).count("model."), int(match.group(2))
            kind = "outer" if level == 0 else "inner" if level == depth - 1 else "middle"
            place = PLACES[kind].get(index)
            if place is not None:
                part, position = place
                number = level if part == ENCODER else depth - 1 - level
                key = f"{part}.{number}.{position}.{match.group(3)}"
                if part == DECODER and position == 1 and kind != "inner" and match.group(3) == "weight":
                    tensor = swapped_halves(tensor)
        out[key] = tensor
    return out


def implied(state: State) -> list[Implied]:
    first = state.get("encoder.0.0.weight")
    if first is None:
        return []
    depth = 1 + max((int(key.split(".")[1]) for key in state if key.startswith("encoder.")), default=0)
    norm = "batch" if "encoder.1.2.weight" in state else "instance"
    widest = max(int(tensor.shape[0]) for key, tensor in state.items() if key.startswith("encoder.") and
                 key.endswith("weight") and tensor.dim() == 4)
    found = [Implied("depth", depth, f"{depth} U-Net levels"),
             Implied("base_channels", int(first.shape[0]), f"{int(first.shape[0])} channels in its first layer"),
             Implied("max_channels", widest, f"{widest} channels at its widest"),
             Implied("in_channels", int(first.shape[1]), f"{int(first.shape[1])} input channels", "data.channels")]
    if depth > 2:
        found.append(Implied("norm", norm, f"{norm} normalisation"))
    last = state.get(f"decoder.{depth - 1}.1.weight")
    if last is not None:
        found.append(Implied("out_channels", int(last.shape[1]), f"{int(last.shape[1])} output channels",
                             "data.channels"))
    return found


register_layout(WeightLayout("pix2pix_unet", NETWORK, "pytorch-CycleGAN-and-pix2pix UnetGenerator (latest_net_G.pth)",
                             has_keys("model.model.0.weight", "model.model.1.model.1.weight"), _convert, implied,
                             is_norm_buffer))
