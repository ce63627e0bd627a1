"""The conditional GAN (``model=cgan`` / ``cgan_mlp``): networks, the recipe, and the real CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, assert_same_training_state, compose_config, run_cli, train_straight_and_resumed
from gantrain.data.source import DataSpec, TensorImages
from gantrain.data.stream import BatchStream
from gantrain.engine.trainer import build_recipe
from gantrain.errors import UserError
from gantrain.recipes.cgan import MAX_PREVIEW_CLASSES, CGANRecipe
from gantrain.registry import LOSSES, NETWORKS, load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
CONDITIONINGS = ["projection", "concat", "acgan"]  # the first is the presets' default
TINY = {"cgan": ["model.generator.base_channels=16", "model.discriminator.base_channels=16"],
        "cgan_mlp": ["model.generator.hidden=[64]", "model.discriminator.hidden=[64]"]}
TINY_CLI = ["model=cgan", "model.generator.base_channels=8", "model.discriminator.base_channels=8",
            "trainer.batch_size=32", *FAST]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


config = compose_config


def recipe_for(spec: DataSpec, *overrides: str, seed: int = 0) -> CGANRecipe:
    torch.manual_seed(seed)
    return build_recipe(config(*overrides), spec, CPU)


# --- a learnable task: each class is a bright bar at its own row ------------------------------------------

K, SIZE = 4, 8


def bar_templates() -> torch.Tensor:
    """(K, 1, 8, 8) uint8: dark background, class k a bright 1-pixel bar on row 1 + 2k."""
    templates = torch.full((K, 1, SIZE, SIZE), 20, dtype=torch.uint8)
    for k in range(K):
        templates[k, 0, 1 + 2 * k, 1:SIZE - 1] = 255
    return templates


def bar_dataset(n: int = 512, seed: int = 0) -> TensorImages:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(K, (n,), generator=gen)
    images = bar_templates()[labels].int() + torch.randint(-20, 21, (n, 1, SIZE, SIZE), generator=gen)
    return TensorImages(images.clamp(0, 255).to(torch.uint8), labels)


def nearest_template_accuracy(recipe: CGANRecipe, per_class: int = 50) -> float:
    """How often a sample drawn for class k is nearer (L2) to k's template than to any other class's."""
    templates = bar_templates().float() / 127.5 - 1
    hits = 0
    for k in range(K):
        samples = recipe.sample(per_class, torch.Generator().manual_seed(k), label=k)
        distances = (samples[:, None] - templates[None]).flatten(2).square().sum(2)
        hits += int((distances.argmin(1) == k).sum())
    return hits / (K * per_class)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("model", ["cgan", "cgan_mlp"])
def test_samples_follow_the_requested_class(model: str, conditioning: str) -> None:
    """After a short CPU training, ≥ 80% of the samples drawn for class k look like class k (chance: 25%)."""
    spec = DataSpec(shape=(1, SIZE, SIZE), num_classes=K)
    recipe = recipe_for(spec, f"model={model}", f"model.discriminator.conditioning={conditioning}",
                        "trainer.batch_size=32", *TINY[model])
    stream = BatchStream(bar_dataset(), 32, seed=0, device=CPU)
    for _ in range(400):
        recipe.train_step(stream.next)
        recipe.end_step()
    accuracy = nearest_template_accuracy(recipe)
    assert accuracy >= 0.8, f"{model} {conditioning}: only {accuracy:.0%} of samples match their class"


# --- networks ---------------------------------------------------------------------------------------------

ARCHITECTURES = {"mlp": {"hidden": [16]}, "dcgan": {"base_channels": 8}}


def network(kind: str, role: str, spec: DataSpec, **options) -> torch.nn.Module:
    name = f"conditional_{kind}_{role}"
    return NETWORKS.build(name, {**ARCHITECTURES[kind], **options}, data_spec=spec, latent_dim=8)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("kind", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_network_shapes_and_labels(kind: str, conditioning: str, shape: tuple[int, ...]) -> None:
    """G(z, y) gives images in [-1, 1] that depend on y; D(x, y) one score per sample (and, for ACGAN, K logits)."""
    torch.manual_seed(0)
    spec = DataSpec(shape=shape, num_classes=5)
    generator = network(kind, "generator", spec)
    discriminator = network(kind, "discriminator", spec, conditioning=conditioning)
    z, labels, other = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 2, 3, 4, 0, 1])
    images = generator(z, labels)
    assert images.shape == (6, *shape) and images.abs().max() <= 1
    assert not torch.allclose(images, generator(z, other))

    if conditioning == "projection":  # V starts at zero (D starts unconditional): give it values to test with
        torch.nn.init.normal_(discriminator.projection.weight)
    output = discriminator(images, labels)
    if conditioning == "acgan":
        scores, logits = output
        assert scores.shape == (6,) and logits.shape == (6, 5)
        assert torch.equal(discriminator(images, other)[0], scores)  # ACGAN's D does not read the label
    else:
        assert output.shape == (6,)
        assert not torch.allclose(discriminator(images, other), output)
    sum(part.sum() for part in (output if isinstance(output, tuple) else (output,))).backward()
    assert all(p.grad is not None for p in discriminator.parameters())


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_projection_adds_the_inner_product_with_the_class_embedding(kind: str) -> None:
    """Projection: D(x, y) = ψ(φ(x)) + <V_y, φ(x)> (Miyato & Koyama 2018)."""
    torch.manual_seed(0)
    net = network(kind, "discriminator", DataSpec(shape=(1, 16, 16), num_classes=3), conditioning="projection")
    torch.nn.init.normal_(net.projection.weight)
    x, labels = torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 1])
    features = net.features(x)
    expected = net.score(features).flatten() + (net.projection.weight[labels] * features.flatten(1)).sum(1)
    assert torch.allclose(net(x, labels), expected, atol=1e-5)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_mlp_networks_on_labelled_toy_points(conditioning: str) -> None:
    """cgan_mlp also fits labelled 2-D points (8gaussians): unbounded generator output, one score per point."""
    spec = DataSpec(shape=(2,), num_classes=8, bounded=False)
    labels = torch.arange(5)
    points = network("mlp", "generator", spec)(torch.randn(5, 8), labels)
    assert points.shape == (5, 2)
    output = network("mlp", "discriminator", spec, conditioning=conditioning)(points, labels)
    assert (output[0] if isinstance(output, tuple) else output).shape == (5,)


@pytest.mark.parametrize("role", ["generator", "discriminator"])
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_networks_refuse_unlabelled_data(kind: str, role: str) -> None:
    with pytest.raises(UserError, match="model=cgan needs labelled data") as info:
        network(kind, role, DataSpec(shape=(1, 16, 16)))
    assert "\n" not in str(info.value)


def test_bad_network_options_are_user_errors() -> None:
    spec = DataSpec(shape=(1, 16, 16), num_classes=3)
    with pytest.raises(UserError, match="choose from: concat, projection, acgan"):
        network("dcgan", "discriminator", spec, conditioning="projectoin")
    with pytest.raises(UserError, match="embedding_dim must be a positive integer"):
        network("mlp", "generator", spec, embedding_dim=0)
    with pytest.raises(UserError, match="image size 30 is not supported"):
        network("dcgan", "generator", DataSpec(shape=(1, 30, 30), num_classes=3))


# --- the recipe -------------------------------------------------------------------------------------------

def labelled_batches(n: int = 16, num_classes: int = 3) -> BatchStream:
    images = torch.randint(0, 256, (n * 2, 1, 16, 16), dtype=torch.uint8)
    return BatchStream(TensorImages(images, torch.arange(n * 2) % num_classes), n, seed=0, device=CPU)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_trains(loss: str, conditioning: str) -> None:
    """Each adversarial loss of the catalogue works with each conditioning; only ACGAN adds class losses."""
    recipe = recipe_for(DataSpec(shape=(1, 16, 16), num_classes=3), "model=cgan_mlp", f"loss={loss}",
                        f"model.discriminator.conditioning={conditioning}", *TINY["cgan_mlp"])
    stream = labelled_batches()
    scalars = recipe.train_step(stream.next)
    assert all(torch.isfinite(value) for value in scalars.values())
    assert {"loss/d", "loss/g"} <= set(scalars)
    assert ({"loss/d_class", "loss/g_class"} <= set(scalars)) == (conditioning == "acgan")


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("regularizer", ["+regularizers.gradient_penalty.weight=10", "+regularizers.r1.gamma=1",
                                         "+regularizers.weight_clip.clip_value=0.01"])
def test_regularizers_see_the_labels(regularizer: str, conditioning: str) -> None:
    recipe = recipe_for(DataSpec(shape=(1, 16, 16), num_classes=3), "model=cgan", regularizer,
                        f"model.discriminator.conditioning={conditioning}", "model.discriminator.norm=layer",
                        "model.generator.base_channels=8", "model.discriminator.base_channels=8")
    scalars = recipe.train_step(labelled_batches().next)
    assert all(torch.isfinite(value) for value in scalars.values())
    if "weight_clip" in regularizer:
        assert all(p.abs().max() <= 0.01 for p in recipe.discriminator.parameters())
    else:
        assert any(name.startswith("penalty/") for name in scalars)


def test_aux_weight_scales_the_acgan_class_loss() -> None:
    spec = DataSpec(shape=(1, 16, 16), num_classes=3)
    common = ["model=cgan_mlp", "model.discriminator.conditioning=acgan", *TINY["cgan_mlp"]]
    once = recipe_for(spec, *common).train_step(labelled_batches().next)
    doubled = recipe_for(spec, *common, "model.aux_weight=2").train_step(labelled_batches().next)
    assert torch.allclose(doubled["loss/d_class"], 2 * once["loss/d_class"])
    with pytest.raises(UserError, match="option 'model.aux_weight' must be at least 0, got -1"):
        recipe_for(spec, *common, "model.aux_weight=-1")


def test_recipe_refuses_unlabelled_data_naming_the_dataset() -> None:
    with pytest.raises(UserError, match="model=cgan needs labelled data; data 'swissroll' has no class labels"):
        recipe_for(DataSpec(shape=(2,), bounded=False), "model=cgan", "data=toy2d", "data.name=swissroll")


def test_preview_has_one_row_per_class_and_fixed_noise_per_column() -> None:
    recipe = recipe_for(DataSpec(shape=(1, 16, 16), num_classes=10), "model=cgan", *TINY["cgan"])
    reference = {"real": torch.zeros(64, 1, 16, 16)}
    inputs = recipe.preview_inputs(reference, torch.Generator().manual_seed(0))
    preview = recipe.preview(inputs)
    assert preview.nrow == 6 and preview.samples.shape == (60, 1, 16, 16)  # 10 classes x 64 // 10 columns
    assert torch.equal(inputs["labels"], torch.arange(10).repeat_interleave(6))
    noise = inputs["noise"].view(10, 6, -1)
    assert torch.equal(noise, noise[:1].expand_as(noise))  # column j has the same z in every row


def test_preview_caps_rows_for_many_classes_and_scatters_points() -> None:
    recipe = recipe_for(DataSpec(shape=(1, 16, 16), num_classes=100), "model=cgan_mlp", *TINY["cgan_mlp"])
    inputs = recipe.preview_inputs({"real": torch.zeros(64, 1, 16, 16)}, torch.Generator().manual_seed(0))
    shown = inputs["labels"].unique()
    assert len(shown) == MAX_PREVIEW_CLASSES and shown[0] == 0 and shown[-1] == 99
    assert recipe.preview(inputs).nrow == 64 // MAX_PREVIEW_CLASSES

    recipe = recipe_for(DataSpec(shape=(2,), num_classes=8, bounded=False), "model=cgan_mlp", "data=toy2d",
                        *TINY["cgan_mlp"])
    reference = {"real": torch.randn(100, 2)}
    preview = recipe.preview(recipe.preview_inputs(reference, torch.Generator().manual_seed(0)))
    assert preview.samples.shape == (100, 2) and torch.equal(preview.reference, reference["real"])


def test_sample_draws_the_class_asked_for_or_cycles_through_all() -> None:
    recipe = recipe_for(DataSpec(shape=(1, 16, 16), num_classes=4), "model=cgan_mlp", *TINY["cgan_mlp"])
    seen: list[torch.Tensor] = []
    recipe.generator.register_forward_hook(lambda module, args, output: seen.append(args[1]))
    assert recipe.sample(5, torch.Generator().manual_seed(0), label=2).shape == (5, 1, 16, 16)
    assert torch.equal(seen.pop(), torch.full((5,), 2))
    recipe.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(seen.pop(), torch.tensor([0, 1, 2, 3, 0, 1]))
    for bad in (4, -1, "three", True):
        with pytest.raises(UserError, match=r"this model has 4 classes: 0\.\.3"):
            recipe.sample(2, torch.Generator(), label=bad)


# --- the real CLI -----------------------------------------------------------------------------------------

def assert_one_line_error(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("gantrain: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_refuses_unlabelled_toy_data(tmp_path: Path) -> None:
    result = run_cli("model=cgan", "data=toy2d", "data.name=swissroll", "trainer.max_steps=1",
                     f"hydra.run.dir={tmp_path / 'r'}", *FAST, cwd=tmp_path, check=False)
    assert_one_line_error(result, "model=cgan needs labelled data", "swissroll")


def test_cli_refuses_an_image_folder_without_class_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    for index in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * index, dtype=np.uint8)).save(root / f"{index}.png")
    result = run_cli("model=cgan", "data=image_folder", f"data.root={root}", "data.image_size=16",
                     "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'r'}", *FAST, cwd=tmp_path, check=False)
    assert_one_line_error(result, "model=cgan needs labelled data", "one subfolder per class")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step conditional run on the offline digits (10 classes, 16x16)."""
    run = tmp_path_factory.mktemp("cgan") / "run"
    run_cli(*TINY_CLI, "trainer.max_steps=2", f"hydra.run.dir={run}", cwd=run.parent)
    return run


def test_cli_preview_grid_has_one_row_per_digit(digits_run: Path) -> None:
    grid = Image.open(digits_run / "samples" / "step_0000002.png")
    assert grid.size == (6 * 18 + 2, 10 * 18 + 2)  # 64 // 10 = 6 noise columns, 10 class rows, 16px + 2px padding


def test_cli_samples_one_class_or_a_class_grid(digits_run: Path, tmp_path: Path) -> None:
    common = [f"checkpoint={digits_run}", "n=20", "seed=1", "device=cpu"]
    run_cli("task=sample", *common, "class=3", "out=three.npz", cwd=tmp_path)
    run_cli("task=sample", *common, "out=grid.npz", cwd=tmp_path)
    three, grid = np.load(tmp_path / "three.npz")["samples"], np.load(tmp_path / "grid.npz")["samples"]
    assert three.shape == grid.shape == (20, 1, 16, 16)
    # same seed, same noise: without class= sample i has class i % 10, so samples 3 and 13 are class 3's
    assert np.array_equal(grid[[3, 13]], three[[3, 13]])
    assert not np.array_equal(grid[4], three[4])

    result = run_cli("task=sample", *common, "class=99", "out=y.npz", cwd=tmp_path, check=False)
    assert_one_line_error(result, "class=99 is out of range", "0..9")
    assert not (tmp_path / "y.npz").exists()


def test_cli_resume_is_exact(tmp_path: Path) -> None:
    """3 steps + resume + 3 steps gives bit-identical networks and optimizers to 6 steps in one go."""
    common = [*TINY_CLI, "trainer.log_every=1", "trainer.sample_every=100", "trainer.checkpoint_every=3"]
    *_, a, b = train_straight_and_resumed(common, total=6, split_at=3, cwd=tmp_path)
    assert a["step"] == b["step"] == 6
    assert_same_training_state(a, b)
    assert torch.equal(a["preview"]["labels"], b["preview"]["labels"])
