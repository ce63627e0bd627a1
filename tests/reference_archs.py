"""Small re-implementations of the published architectures, with their real key names, for the weight tests.

Written from the reference projects' code (junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py,
xinntao/ESRGAN RRDBNet_arch.py, XPixelGroup/BasicSR basicsr/archs/rrdbnet_arch.py and discriminator_arch.py):
same layers, same order, same names, any size. Their random weights, saved in the published layouts, must
give the same outputs through gantrain's networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseBlock(nn.Module):
    """ResidualDenseBlock_5C / ResidualDenseBlock: conv1..conv5, 0.2-scaled residual."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        for k in range(1, 6):
            setattr(self, f"conv{k}", nn.Conv2d(features + (k - 1) * growth, growth if k < 5 else features, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for k in range(1, 5):
            outs.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(outs, 1)), 0.2))
        return self.conv5(torch.cat(outs, 1)) * 0.2 + x


class ReferenceRRDB(nn.Module):
    def __init__(self, features: int, growth: int, upper: bool) -> None:
        super().__init__()
        self.names = [f"{'RDB' if upper else 'rdb'}{j}" for j in (1, 2, 3)]
        for name in self.names:
            setattr(self, name, DenseBlock(features, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.names:
            out = getattr(self, name)(out)
        return out * 0.2 + x


class ReferenceRRDBNet(nn.Module):
    """ESRGAN's RRDBNet (``basicsr=False``: conv_first, RRDB_trunk, trunk_conv, upconvN, HRconv, conv_last) or
    BasicSR's (conv_first, body, conv_body, conv_upN, conv_hr, conv_last; x2 folds 2x2 pixels in first)."""

    def __init__(self, channels: int, features: int, blocks: int, growth: int, basicsr: bool, scale: int = 4) -> None:
        super().__init__()
        self.basicsr, self.scale = basicsr, scale
        self.trunk_name, self.trunk_conv_name = ("body", "conv_body") if basicsr else ("RRDB_trunk", "trunk_conv")
        self.up_name, self.hr_name = ("conv_up", "conv_hr") if basicsr else ("upconv", "HRconv")
        fold = {4: 1, 2: 2}[scale] if basicsr else 1
        self.fold = fold
        self.conv_first = nn.Conv2d(channels * fold ** 2, features, 3, 1, 1)
        setattr(self, self.trunk_name, nn.Sequential(*[ReferenceRRDB(features, growth, not basicsr)
                                                       for _ in range(blocks)]))
        setattr(self, self.trunk_conv_name, nn.Conv2d(features, features, 3, 1, 1))
        for u in (1, 2):
            setattr(self, f"{self.up_name}{u}", nn.Conv2d(features, features, 3, 1, 1))
        setattr(self, self.hr_name, nn.Conv2d(features, features, 3, 1, 1))
        self.conv_last = nn.Conv2d(features, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold > 1:
            b, c, h, w = x.shape
            x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        fea = self.conv_first(x)
        fea = fea + getattr(self, self.trunk_conv_name)(getattr(self, self.trunk_name)(fea))
        for u in (1, 2):
            fea = F.leaky_relu(getattr(self, f"{self.up_name}{u}")(F.interpolate(fea, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(getattr(self, self.hr_name)(fea), 0.2))


def esrgan_sequential_keys(named: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """The authors' first key layout, the inverse of their transer_RRDB_models.py."""
    places = {"conv_first": "model.0", "trunk_conv": f"model.1.sub.{blocks}", "upconv1": "model.3",
              "upconv2": "model.6", "HRconv": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in named.items():
        module, param = key.rsplit(".", 1)
        if module.startswith("RRDB_trunk."):
            out[f"{module.replace('RRDB_trunk.', 'model.1.sub.')}.0.{param}"] = value
        else:
            out[f"{places[module]}.{param}"] = value
    return out


class ReferenceVGGStyleDiscriminator(nn.Module):
    """BasicSR's VGGStyleDiscriminator for 128x128 inputs."""

    def __init__(self, channels: int, features: int) -> None:
        super().__init__()
        widths = [features, features * 2, features * 4, features * 8, features * 8]
        previous = channels
        for s, width in enumerate(widths):
            setattr(self, f"conv{s}_0", nn.Conv2d(previous, width, 3, 1, 1, bias=s == 0))
            if s > 0:
                setattr(self, f"bn{s}_0", nn.BatchNorm2d(width))
            setattr(self, f"conv{s}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            setattr(self, f"bn{s}_1", nn.BatchNorm2d(width))
            previous = width
        self.linear1 = nn.Linear(features * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in range(5):
            x = getattr(self, f"conv{s}_0")(x)
            x = F.leaky_relu(getattr(self, f"bn{s}_0")(x) if s > 0 else x, 0.2)
            x = F.leaky_relu(getattr(self, f"bn{s}_1")(getattr(self, f"conv{s}_1")(x)), 0.2)
        return self.linear2(F.leaky_relu(self.linear1(x.flatten(1)), 0.2))


def norm_layer(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, bias: bool) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias),
                                        norm_layer(norm, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ReferenceResnetGenerator(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, ngf: int, n_blocks: int, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "instance"
        model = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias), norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=bias), norm_layer(norm, ngf * m * 2), nn.ReLU(True)]
        model += [ResnetBlock(ngf * 4, norm, bias) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=bias),
                      norm_layer(norm, ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    def __init__(self, outer: int, inner: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch") -> None:
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        downconv = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [downconv, submodule, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), downconv, norm_layer(norm, inner), submodule, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class ReferenceUnetGenerator(nn.Module):
    def __init__(self, in_nc: int, out_nc: int, num_downs: int, ngf: int, norm: str = "batch") -> None:
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm)
        for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
            block = UnetSkipConnectionBlock(outer, inner, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(out_nc, ngf, input_nc=in_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReferenceNLayerDiscriminator(nn.Module):
    def __init__(self, in_nc: int, ndf: int, n_layers: int, norm: str = "batch") -> None:
        super().__init__()
        bias = norm == "instance"
        seq = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * previous, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=bias),
                    norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BatchNorm statistic random (so no layer is an identity that hides a wrong map), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5 if name.endswith("running_var") \
                    else torch.randn(tensor.shape, generator=generator) * 0.1
                tensor.copy_(values)
    return net.eval()
