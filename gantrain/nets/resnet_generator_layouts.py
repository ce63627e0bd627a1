"""pytorch-CycleGAN-and-pix2pix's ``ResnetGenerator`` files (``latest_net_G_A.pth``, ``latest_net_G.pth``,
the released ``horse2zebra.pth``) as ``resnet_generator`` weights.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) builds the same Sequential as
gantrain, index for index: reflection pad, 7x7 conv, norm, ReLU; two stride-2 convs; residual blocks; two
transposed convs; reflection pad, 7x7 conv, tanh. Its residual blocks call their body ``conv_block``, gantrain's
``body``; that is the only renaming. Files saved with older PyTorch versions carry running statistics for
InstanceNorm layers that the reference itself drops when loading (``affine=False, track_running_stats=False``):
they are ignored here too.
"""

from __future__ import annotations

import re

from gantrain.nets.weight_layout import Implied, State, WeightLayout, indices, is_norm_buffer, register_layout, renamed

NETWORK = "resnet_generator"


def implied(state: State) -> list[Implied]:
    last_index = max(indices(state, r"model\.(\d+)\.weight$"), default=0)
    stem, last = state.get("model.1.weight"), state.get(f"model.{last_index}.weight")
    if stem is None or last is None:
        return []
    blocks = len(indices(state, r"model\.(\d+)\.body\."))
    norm = "batch" if "model.2.weight" in state else "instance"
    return [Implied("base_channels", int(stem.shape[0]), f"{int(stem.shape[0])} stem channels"),
            Implied("blocks", blocks, f"{blocks} residual blocks"),
            Implied("norm", norm, f"{norm} normalisation"),
            Implied("in_channels", int(stem.shape[1]), f"{int(stem.shape[1])} input channels", "data.channels"),
            Implied("out_channels", int(last.shape[0]), f"{int(last.shape[0])} output channels", "data.channels")]


def _convert(state: State) -> State:
    return renamed(state, [(r"(model\.\d+)\.conv_block\.(.+)", r"\1.body.\2")])


register_layout(WeightLayout(
    "cyclegan_resnet", NETWORK, "pytorch-CycleGAN-and-pix2pix ResnetGenerator (latest_net_G_A.pth)",
    lambda keys: any(re.match(r"model\.\d+\.conv_block\.\d+\.weight$", key) for key in keys), _convert, implied,
    is_norm_buffer))
