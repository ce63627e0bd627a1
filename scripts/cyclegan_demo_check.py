#!/usr/bin/env python
"""How well a run of ``gantrain model=cyclegan data=unpaired_demo`` keeps the picture, on held-out crops.

The demo's old prints are a known transform T of colour photos (``gantrain.data.demo_photos.vintage``), so
on the held-out colour crops a we can score what an unpaired model is never shown: SSIM and PSNR of G_AB(a)
against T(a), and of the round trip G_BA(G_AB(a)) against a (the old-print side: G_AB(G_BA(b)) against b).
For scale, the input itself scored as the output ("copy") is printed beside them: T changes colour, not
structure, so copying a already scores high SSIM against T(a); PSNR tells a copy from a translation.

    python scripts/cyclegan_demo_check.py outputs/DATE/TIME                 # the numbers
    python scripts/cyclegan_demo_check.py RUN --grid docs/cyclegan_demo.png  # and the first rows, unpicked
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # check this checkout, not some other installed copy

from gantrain.data.build import build_data  # noqa: E402
from gantrain.data.demo_photos import vintage  # noqa: E402
from gantrain.data.source import normalise_uint8  # noqa: E402
from gantrain.engine.restore import load_trained  # noqa: E402
from gantrain.metrics.fidelity import PeakSignalToNoise, StructuralSimilarity  # noqa: E402
from gantrain.metrics.pixels import compared, eight_bit  # noqa: E402
from gantrain.registry import load_builtin_parts  # noqa: E402


def old_print(colour: torch.Tensor) -> torch.Tensor:
    """T of each image: the demo's own old-print transform, on its 8-bit pixels."""
    pixels = eight_bit(colour).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return normalise_uint8(torch.stack([torch.from_numpy(vintage(image)) for image in pixels]).permute(0, 3, 1, 2))


def scores(output: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    """Mean SSIM and PSNR (dB) over the images on 8-bit RGB, as the metrics task computes them, and SSIM on
    luma (Y) alone: the structure without the colour (an old print does not say which colour a dark patch was)."""
    x, y = compared(output.clamp(-1, 1), False, 0), compared(target, False, 0)
    ssim = StructuralSimilarity()
    luma = ssim.per_image(compared(output.clamp(-1, 1), True, 0), compared(target, True, 0)).mean().item()
    return ssim.per_image(x, y).mean().item(), PeakSignalToNoise().per_image(x, y).mean().item(), luma


def draw_grid(sides: list[tuple[torch.Tensor, ...]], path: Path, rows: int) -> None:
    """Left: colour crops | old print | back; right: old-print crops | colour | back; the first ``rows`` of each."""
    size, gap, header = sides[0][0].shape[-1] * 2, 8, 18
    width = 2 * (3 * size + 2 * 4) + gap
    image = Image.new("RGB", (width, header + rows * (size + 4)), "white")
    draw = ImageDraw.Draw(image)
    for s, columns in enumerate(sides):
        left = s * (3 * size + 8 + gap)
        for c, (label, column) in enumerate(zip(("input", "translated", "and back"), columns)):
            x = left + c * (size + 4)
            draw.text((x + 2, 3), label, fill=(0, 0, 0))
            for r in range(min(rows, len(column))):
                pixels = column[r].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
                tile = Image.fromarray(pixels).resize((size, size), Image.NEAREST)
                image.paste(tile, (x, header + r * (size + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the run folder (or a checkpoint) of model=cyclegan data=unpaired_demo")
    parser.add_argument("--grid", type=Path, default=None, help="also draw the first --rows crops of each side here")
    parser.add_argument("--rows", type=int, default=4)
    args = parser.parse_args()
    load_builtin_parts()
    trained = load_trained(args.run, "cpu", "eval")
    recipe = trained.recipe
    test = build_data(trained.config.data).held_out["test"]  # centred crops, as the run's previews and task=eval
    batch = test.get_batch(torch.arange(len(test)))
    a, b = batch["a"].cpu(), batch["b"].cpu()
    true_print = old_print(a)
    with torch.no_grad():
        printed = recipe.translate_on_cpu(a, "AtoB").clamp(-1, 1)
        a_back = recipe.translate_on_cpu(printed, "BtoA").clamp(-1, 1)
        coloured = recipe.translate_on_cpu(b, "BtoA").clamp(-1, 1)
        b_back = recipe.translate_on_cpu(coloured, "AtoB").clamp(-1, 1)

    print(f"{len(a)} held-out colour crops, {len(b)} old-print crops, {a.shape[-1]}x{a.shape[-2]}:")
    for name, output, target in (("G_AB(a) vs T(a)", printed, true_print), ("copy: a vs T(a)", a, true_print),
                                 ("G_BA(G_AB(a)) vs a", a_back, a), ("G_AB(G_BA(b)) vs b", b_back, b)):
        ssim, psnr, luma = scores(output, target)
        print(f"  {name:<20} SSIM {ssim:.3f}  PSNR {psnr:5.2f} dB  SSIM of Y {luma:.3f}")
    if args.grid:
        draw_grid([(a, printed, a_back), (b, coloured, b_back)], args.grid, args.rows)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
