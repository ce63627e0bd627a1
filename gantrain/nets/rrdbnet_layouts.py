"""Published RRDBNet weight files (ESRGAN, Real-ESRGAN) as ``rrdbnet_generator`` weights.

Three key layouts carry the same network (checked against the reference code: xinntao/ESRGAN
``RRDBNet_arch.py`` and ``transer_RRDB_models.py``, XPixelGroup/BasicSR ``basicsr/archs/rrdbnet_arch.py``):

- ``esrgan_sequential``: the ESRGAN authors' first release (``RRDB_ESRGAN_x4.pth``, ``RRDB_PSNR_x4.pth`` as
  first published): one ``model`` Sequential; ``model.0`` the first convolution, ``model.1.sub.N.RDBj.convk.0``
  the dense layers, ``model.1.sub.<blocks>`` the trunk convolution, then (upsample, conv, LeakyReLU) per x2 stage
  (``model.3``, ``model.6``), the HR convolution and the last one (``model.8``, ``model.10`` at x4).
- ``esrgan_named``: the same files after the authors' conversion script: ``conv_first``,
  ``RRDB_trunk.N.RDBj.convk``, ``trunk_conv``, ``upconv1``/``upconv2``, ``HRconv``, ``conv_last``.
- ``basicsr_rrdbnet``: BasicSR and Real-ESRGAN (``ESRGAN_SRx4_DF2KOST_official``, ``RealESRGAN_x4plus``, usually
  wrapped as ``params_ema``): ``conv_first``, ``body.N.rdbj.convk``, ``conv_body``, ``conv_up1``/``conv_up2``,
  ``conv_hr``, ``conv_last``; its x2 (x1) models fold 2x2 (4x4) input pixels into channels first
  (``input_unshuffle``), seen here as a first convolution with 4 (16) times the image channels.

The computation is the same in all three and in gantrain's network: dense blocks of five convolutions with
LeakyReLU 0.2 and a 0.2-scaled residual, RRDBs of three with a 0.2-scaled residual, a trunk convolution
with a long skip, nearest x2 + convolution + LeakyReLU per stage, HR convolution + LeakyReLU, last
convolution. Only names differ, so no tensor is reshaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gantrain.nets.weight_layout import Implied, State, WeightLayout, has_keys, indices, register_layout, renamed

NETWORK = "rrdbnet_generator"
DENSE = r"(\d+)\.(?:RDB|rdb)([123])\.conv([1-5])"


def dense(match: re.Match) -> str:
    """``...N.RDBj.convk[.0].param`` -> ``trunk.N.blocks.(j-1).convs.(k-1).param``."""
    block, rdb, conv, param = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    return f"trunk.{block}.blocks.{rdb - 1}.convs.{conv - 1}.{param}"


def implied(state: State) -> list[Implied]:
    """What an RRDBNet file fixes, read from its tensors under gantrain's keys."""
    head = state.get("head.weight")
    if head is None:
        return []
    blocks = indices(state, r"trunk\.(\d+)\.blocks\.")
    stages = len(indices(state, r"upsampling\.(\d+)\."))
    channels_in = int(head.shape[1])
    unshuffle = 2 if channels_in in (4, 12) else 4 if channels_in in (16, 48) else 1
    found = [Implied("features", int(head.shape[0]), f"{int(head.shape[0])} trunk channels"),
             Implied("blocks", len(blocks), f"{len(blocks)} RRDB blocks"),
             Implied("input_unshuffle", unshuffle, f"a pixel-unshuffle x{unshuffle} input" if unshuffle > 1
                     else "no pixel-unshuffle input"),
             Implied("in_channels", channels_in // unshuffle ** 2, f"{channels_in // unshuffle ** 2} input channels",
                     "data.channels"),
             Implied("scale", 2 ** stages // unshuffle, f"an x{2 ** stages // unshuffle} upscaler", "data.scale")]
    first = state.get("trunk.0.blocks.0.convs.0.weight")
    if first is not None:
        found.append(Implied("growth", int(first.shape[0]), f"growth {int(first.shape[0])}"))
    last = state.get("tail.2.weight")
    if last is not None:
        found.append(Implied("out_channels", int(last.shape[0]), f"{int(last.shape[0])} output channels", "data.channels"))
    return found


def _sequential(state: State) -> State:
    top = indices(state, r"model\.(\d+)\.weight$")
    top = [index for index in top if index >= 2]  # after model.0 (first conv) and model.1 (the trunk)
    *ups, hr, last = top if len(top) >= 2 else [None, None]
    trunk_conv = max(indices(state, r"model\.1\.sub\.(\d+)\.weight$"), default=-1)
    rules = [(r"model\.0\.(weight|bias)", r"head.\1"),
             (rf"model\.1\.sub\.{DENSE}\.0\.(weight|bias)", dense),
             (rf"model\.1\.sub\.{trunk_conv}\.(weight|bias)", rf"trunk.{trunk_conv}.\1"),
             (rf"model\.{hr}\.(weight|bias)", r"tail.0.\1"), (rf"model\.{last}\.(weight|bias)", r"tail.2.\1")]
    rules += [(rf"model\.{index}\.(weight|bias)", rf"upsampling.{stage}.\1") for stage, index in enumerate(ups)]
    return renamed(state, rules)


def _by_name(trunk: str, trunk_conv: str, upconv: str, hr: str) -> Callable[[State], State]:
    """A converter for the named layouts: their names for the trunk, its convolution, the upsampling and HR ones."""
    def convert(state: State) -> State:
        blocks = len(indices(state, rf"{trunk}\.(\d+)\."))
        return renamed(state, [(r"conv_first\.(weight|bias)", r"head.\1"),
                               (rf"{trunk}\.{DENSE}\.(weight|bias)", dense),
                               (rf"{trunk_conv}\.(weight|bias)", rf"trunk.{blocks}.\1"),
                               (rf"{upconv}(\d+)\.(weight|bias)", lambda m: f"upsampling.{int(m.group(1)) - 1}.{m.group(2)}"),
                               (rf"{hr}\.(weight|bias)", r"tail.0.\1"), (r"conv_last\.(weight|bias)", r"tail.2.\1")])
    return convert


register_layout(WeightLayout("esrgan_sequential", NETWORK, "the ESRGAN authors' first release (RRDB_ESRGAN_x4.pth)",
                             has_keys("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"), _sequential, implied))
register_layout(WeightLayout("esrgan_named", NETWORK, "the ESRGAN authors' converted files (conv_first, RRDB_trunk)",
                             has_keys("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight"),
                             _by_name("RRDB_trunk", "trunk_conv", "upconv", "HRconv"), implied))
register_layout(WeightLayout("basicsr_rrdbnet", NETWORK, "BasicSR / Real-ESRGAN (conv_first, body.N.rdb1, conv_body)",
                             has_keys("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight"),
                             _by_name("body", "conv_body", "conv_up", "conv_hr"),
                             implied))
