"""BasicSR's ``VGGStyleDiscriminator`` files (its ESRGAN and SRGAN discriminators, ``net_d`` / ``params``) as
``vgg_discriminator`` weights.

The reference (XPixelGroup/BasicSR, ``basicsr/archs/discriminator_arch.py``) names each layer
(``convS_0``, ``bnS_0``, ``convS_1``, ``bnS_1``, ``linear1``, ``linear2``); gantrain builds the same layers
(3x3 conv + BN + LeakyReLU, 4x4 stride-2 conv + BN + LeakyReLU per stage, no BN after the very first conv,
dense 100, one logit) as one Sequential: stage 0 takes 5 places, every later stage 6. Same computation with
``stride_kernel: 4`` and ``dense: 100`` (model=esrgan's); 128x128 inputs have 5 stages, 256x256 ones 6.
"""

from __future__ import annotations

from collections.abc import Callable

from gantrain.nets.weight_layout import Implied, State, WeightLayout, has_keys, indices, register_layout, renamed

NETWORK = "vgg_discriminator"


def _place(stage: int, second: bool, norm: bool) -> int:
    """Index in gantrain's ``features`` of stage ``stage``'s first/second conv (or its BN)."""
    if stage == 0:
        return 3 if norm else (2 if second else 0)
    start = 5 + 6 * (stage - 1)
    return start + (3 if second else 0) + (1 if norm else 0)


def _layer(kind: str) -> Callable:
    def replace(match) -> str:  # noqa: ANN001
        stage, second = int(match.group(1)), match.group(2) == "1"
        return f"features.{_place(stage, second, kind == 'bn')}.{match.group(3)}"
    return replace


def _convert(state: State) -> State:
    return renamed(state, [(r"conv(\d+)_([01])\.(.+)", _layer("conv")), (r"bn(\d+)_([01])\.(.+)", _layer("bn")),
                           (r"linear1\.(.+)", r"head.1.\1"), (r"linear2\.(.+)", r"head.3.\1")])


def implied(state: State) -> list[Implied]:
    first, dense = state.get("features.0.weight"), state.get("head.1.weight")
    if first is None or dense is None:
        return []
    stages = 1 + len(indices(state, r"features\.(\d+)\.running_mean")) // 2
    return [Implied("base_channels", int(first.shape[0]), f"{int(first.shape[0])} channels in its first layer"),
            Implied("stages", stages, f"{stages} stride-2 stages"),
            Implied("stride_kernel", int(state["features.2.weight"].shape[-1]),
                    f"{int(state['features.2.weight'].shape[-1])}x{int(state['features.2.weight'].shape[-1])} "
                    "stride-2 kernels"),
            Implied("dense", int(dense.shape[0]), f"a dense layer of {int(dense.shape[0])}"),
            Implied("in_channels", int(first.shape[1]), f"{int(first.shape[1])} input channels", "data.channels")]


register_layout(WeightLayout("basicsr_vgg", NETWORK, "BasicSR VGGStyleDiscriminator (conv0_0, bn0_1, linear1)",
                             has_keys("conv0_0.weight", "conv0_1.weight", "linear1.weight"), _convert, implied))
