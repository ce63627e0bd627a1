"""pytorch-CycleGAN-and-pix2pix's ``NLayerDiscriminator`` files (``latest_net_D.pth``, ``latest_net_D_A.pth``) as
``patchgan_discriminator`` weights.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) and gantrain build the same
Sequential ``model`` index for index (conv, LeakyReLU, then conv + norm + LeakyReLU per layer, then the logit
conv), so the keys are the same; only old saves' InstanceNorm running statistics are dropped. Mind the names:
the reference's ``D_A`` judges domain B images (the outputs of ``G_A``), so it is gantrain's ``discriminator_b``.
"""

from __future__ import annotations

import re

from gantrain.nets.weight_layout import Implied, State, WeightLayout, indices, is_norm_buffer, register_layout

NETWORK = "patchgan_discriminator"


def implied(state: State) -> list[Implied]:
    convs = [index for index in indices(state, r"model\.(\d+)\.weight$") if state[f"model.{index}.weight"].dim() == 4]
    if not convs:
        return []
    first = state[f"model.{convs[0]}.weight"]
    found = [Implied("base_channels", int(first.shape[0]), f"{int(first.shape[0])} channels in its first layer"),
             Implied("in_channels", int(first.shape[1]), f"{int(first.shape[1])} input channels")]
    if int(first.shape[-1]) == 4:  # the PixelGAN (n_layers=0) has 1x1 kernels and its own count
        found.append(Implied("n_layers", len(convs) - 2, f"{len(convs) - 2} layers (n_layers)"))
        found.append(Implied("norm", "batch" if "model.3.weight" in state else "instance",
                             f"{'batch' if 'model.3.weight' in state else 'instance'} normalisation"))
    return found


register_layout(WeightLayout(
    "pix2pix_nlayer", NETWORK, "pytorch-CycleGAN-and-pix2pix NLayerDiscriminator (latest_net_D.pth)",
    lambda keys: bool(keys) and all(re.fullmatch(r"model\.\d+\.[a-z_]+", key) for key in keys), dict, implied,
    is_norm_buffer))
