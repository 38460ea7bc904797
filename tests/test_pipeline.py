"""The diffusers pipeline: `cddpm export` -> CddpmPipeline.from_pretrained -> the images of `cddpm sample`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image
from test_sample import make_run, small_model

from cddpm import cli, runs, sample
from cddpm import model as M
from cddpm.cli import main
from cddpm.diffusion import train_scheduler
from cddpm.pipeline import MANIFEST, CddpmPipeline

LABELS = ["red sphere,cyan cube", ["gray cylinder"], "yellow sphere, blue cube, red cylinder"]
SAMPLE_LABELS = ["red sphere,cyan cube", "gray cylinder", "yellow sphere,blue cube,red cylinder"]


def canvas_model(layout: bool = False) -> M.ConditionalUNet:
    """A micro canvas model whose empty floor is not zero, so a lost ``background`` buffer shows (and, for a layout
    model, whose boxes differ by class, so a lost ``layout_boxes`` buffer shows)."""
    torch.manual_seed(0)
    model = M.ConditionalUNet(M.preset("canvas64", sample_size=16, patch_size=2, block_out_channels=(16, 32),
                                       attention_levels=(1,), norm_num_groups=8, layout=layout)).eval()
    model.background.copy_(torch.linspace(-0.8, 0.6, 3 * 16 * 16).reshape(3, 16, 16))
    if layout:
        corner = torch.randint(0, 9, (24, 256, 2), generator=torch.Generator().manual_seed(0))
        model.layout_boxes.copy_(torch.cat([corner, corner + 7], 2))
    return model


def load(folder: Path) -> CddpmPipeline:
    pipe = CddpmPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pngs(folder: Path, n: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / f"{i}.png")) for i in range(n)]


def test_the_model_is_a_diffusers_model_built_from_a_spec_or_its_fields(tmp_path):
    model = canvas_model()
    spec = model.spec
    assert M.ConditionalUNet(**spec.to_dict()).config == model.config
    assert M.ConditionalUNet(spec, dropout=0.1).spec == M.override(spec, dropout=0.1)
    assert model.config.canvas and model.config.patch_size == 2 and model.config.conditioning == "embed"
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    model.save_pretrained(tmp_path)
    again = M.ConditionalUNet.from_pretrained(tmp_path)
    assert again.spec == spec and torch.equal(again.background, model.background)
    with pytest.raises(ValueError, match="patch_size=3"):
        M.ConditionalUNet(sample_size=16, patch_size=3)


@pytest.mark.parametrize("kind", ["whole", "canvas", "layout"])
def test_an_export_loads_without_the_run_and_draws_the_images_of_cddpm_sample(tmp_path, tiny_root, kind):
    run = make_run(tmp_path / "run", tiny_root, model=None if kind == "whole" else canvas_model(kind == "layout"))
    out, exported = tmp_path / "sampled", tmp_path / "export"
    common = ["sample", "--run", str(run), "--labels", *SAMPLE_LABELS, "--steps", "3", "--guidance", "2",
              "--seed", "4", "--frames", "2"]
    assert main(common + ["--out", str(out)]) == 0
    if kind == "canvas":  # a pass's edit threshold: the pipeline's as `cddpm sample`'s
        assert main(common + ["--out", str(tmp_path / "kept"), "--edit-threshold", "1.5"]) == 0
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    trained = runs.load_model(run)[0]
    shutil.rmtree(run)  # the export stands alone

    pipe = load(exported)
    left = {"export", "root", "sampled"} | ({"kept"} if kind == "canvas" else set())
    assert {p.name for p in tmp_path.iterdir()} == left  # no temporary folder left
    assert type(pipe.unet) is M.ConditionalUNet and pipe.unet.spec == trained.spec
    assert pipe.unet.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), trained.state_dict().values()))
    if kind != "whole":
        assert pipe.unet.background.abs().min() > 0 and torch.equal(pipe.unet.background, trained.background)
    images = pipe(LABELS, num_inference_steps=3, guidance_scale=2.0, seed=4).images
    assert [im.size for im in images] == [(64, 64)] * 3
    expected = pngs(out / "images" / "labels", 3)
    for got, want in zip(images, expected):
        np.testing.assert_array_equal(np.asarray(got), want)
    card = (exported / "README.md").read_text()
    assert "| steps trained | 5 |" in card
    assert ("canvas" in card) == (kind != "whole") and ("box" in card) == (kind == "layout")
    if kind == "canvas":
        kept = pipe(LABELS, num_inference_steps=3, guidance_scale=2.0, seed=4, edit_threshold=1.5).images
        expected = pngs(tmp_path / "kept" / "images" / "labels", 3)
        for got, want in zip(kept, expected):
            np.testing.assert_array_equal(np.asarray(got), want)
        assert any(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 1 for a, b in zip(kept, images))


@pytest.fixture(scope="module")
def pipe() -> CddpmPipeline:
    pipe = CddpmPipeline(unet=small_model(), scheduler=sample.make_sampler("dpmsolver", dict(train_scheduler().config)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_schedulers_swap_with_from_config(pipe):
    labels = [["red sphere"], ["cyan cube", "gray cylinder"]]
    default = pipe.scheduler
    try:
        pipe.scheduler = DDIMScheduler.from_config(default.config, timestep_spacing="trailing")
        ddim = pipe(labels, num_inference_steps=3, seed=1, output_type="pt").images
        # the same images as the library's DDIM sampler (built from the training schedule)
        torch.testing.assert_close(ddim * 2 - 1, sample.generate(pipe.unet, dict(train_scheduler().config), labels,
                                                                 sample.SampleRequest(sampler="ddim", steps=3, seed=1)),
                                   rtol=0, atol=1e-5)
        pipe.scheduler = DDPMScheduler.from_config(default.config)
        (ddpm,) = pipe(labels, num_inference_steps=3, seed=1, output_type="np", return_dict=False)
        assert ddpm.shape == (2, 64, 64, 3) and 0 <= ddpm.min() and ddpm.max() <= 1
        assert np.abs(ddpm - ddim.permute(0, 2, 3, 1).numpy()).mean() > 0.01
    finally:
        pipe.scheduler = default


def test_generators_seed_and_the_global_state(pipe):
    labels = [["red sphere"], ["cyan cube"]]
    by_seed = pipe(labels, num_inference_steps=2, seed=3, output_type="pt").images
    by_list = pipe(labels, num_inference_steps=2, generator=sample.generators(3, [0, 1]), output_type="pt").images
    assert torch.equal(by_seed, by_list)
    one = pipe(labels, num_inference_steps=2, generator=torch.Generator().manual_seed(3), output_type="pt").images
    assert not torch.equal(one[0], one[1])  # one generator: each image draws on from where the last stopped
    torch.manual_seed(0)
    first = pipe(labels, num_inference_steps=2, output_type="pt").images
    torch.manual_seed(0)
    assert torch.equal(pipe(labels, num_inference_steps=2, output_type="pt").images, first)


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=["red sphere,red sphere"]), "duplicate objects"),
    (dict(labels=[["red spere"]]), "did you mean 'red sphere'"),
    (dict(labels=[]), "no labels"),
    (dict(num_inference_steps=0), "outside 1..1000"),
    (dict(guidance_scale=float("nan")), "guidance_scale"),
    (dict(output_type="latent"), "unknown output_type"),
    (dict(edit_threshold=2.5), r"edit_threshold=2\.5 must lie in \[0, 2\)"),
    (dict(seed=1, generator=torch.Generator()), "not both"),
    (dict(generator=[torch.Generator()] * 2), "2 generators for 1 images"),
])
def test_bad_pipeline_input_is_a_one_line_error(pipe, kwargs, message):
    kwargs = {"labels": ["red sphere"], **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        pipe(**kwargs)
    assert "\n" not in str(err.value)


def test_export_refuses_what_it_did_not_write_and_replaces_an_export_with_force(tmp_path, tiny_root, capsys):
    run = make_run(tmp_path / "run", tiny_root)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", "--run", str(run), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert "did not write (notes.txt)" in err and err.count("\n") == 1
    (out / "notes.txt").unlink()  # an empty folder is fine

    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    written = set(json.loads((out / MANIFEST).read_text()))
    assert {"model_index.json", "README.md", "unet/config.json", "scheduler/scheduler_config.json"} <= written
    assert main(["export", "--run", str(run), "--out", str(out)]) == 2
    assert "earlier cddpm export; pass --force" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--out", str(out), "--force", "--no-ema"]) == 0
    assert "raw, checkpoint step-5" in (out / "README.md").read_text()

    (out / "unet" / "notes.txt").write_text("mine")  # a file added to an export is kept, even with --force
    assert main(["export", "--run", str(run), "--out", str(out), "--force"]) == 2
    assert "did not write (unet/notes.txt)" in capsys.readouterr().err
    assert (out / "unet" / "notes.txt").read_text() == "mine"
    assert main(["export", "--run", str(run), "--out", str(out / "README.md")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--checkpoint", "step-9", "--out", str(tmp_path / "new")]) == 2
    assert "choose last or one of: step-5" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_the_preset_help_lists_every_preset():
    assert cli.PRESETS == tuple(M.PRESETS)
