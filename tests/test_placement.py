"""Placement and adding (docs/placement.md): objects drawn in given boxes, onto a given picture, from the library, the
command line and the pipeline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_canvas import BoxPainter
from test_pipeline import canvas_model
from test_sample import make_run, small_model

from cddpm import canvas as C
from cddpm import data, runs, sample
from cddpm import labels as L
from cddpm.cli import main
from cddpm.diffusion import train_scheduler
from cddpm.pipeline import CddpmPipeline
from cddpm.sample import SampleRequest

SCENES = [["red cube", "blue sphere"], ["gray cylinder"]]
BOXES = [[[8, 8, 40, 40], [32, 28, 64, 64]], [None]]  # 64x64 pixels; the micro model's training boxes are 28 a side
REQUEST = SampleRequest(steps=3, seed=2)


@pytest.fixture(scope="module")
def layout_model():
    return canvas_model(layout=True)


@pytest.fixture(scope="module")
def config() -> dict:
    return dict(train_scheduler().config)


def inside(box: list[int], size: int = 16) -> torch.Tensor:
    """(size, size) bool of a 64x64-pixel box at ``size``."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    y0, x0, y1, x1 = (v * size // 64 for v in box)
    mask[y0:y1, x0:x1] = True
    return mask


def changed_pixels(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (after - before).abs().amax(0) > 1e-6


def test_each_pass_draws_inside_its_given_box(layout_model, config):
    images = sample.generate(layout_model, config, SCENES, REQUEST, size=None, boxes=BOXES)
    first = sample.generate(layout_model, config, [SCENES[0][:1]], REQUEST, size=None, boxes=[BOXES[0][:1]])[0]
    floor = data.to_float(data.to_uint8(layout_model.background))  # every pass's image is 8-bit, like training's
    for before, after, box in ((floor, first, BOXES[0][0]), (first, images[0], BOXES[0][1])):
        drawn = changed_pixels(before, after)
        assert drawn.any() and not (drawn & ~inside(box)).any()  # the pass changed its box and nothing else


def test_without_boxes_the_images_are_todays_and_a_box_changes_only_its_image(layout_model, config):
    today = sample.generate(layout_model, config, SCENES, REQUEST)
    assert torch.equal(sample.generate(layout_model, config, SCENES, REQUEST, boxes=[[None, None], None]), today)
    placed = sample.generate(layout_model, config, SCENES, REQUEST, boxes=[BOXES[0], None])
    assert torch.equal(placed[1], today[1]) and not torch.equal(placed[0], today[0])


def test_objects_placed_at_random_keep_off_given_boxes_and_objects_on_the_picture(config):
    model = BoxPainter()  # places from two boxes: the top-left and the bottom-right quarter
    for seed in range(4):  # the second object takes the bottom-right quarter: the first goes to the other
        model.seen.clear()
        sample.generate(model, config, [["cyan cube", "gray cylinder"]], SampleRequest(steps=5, seed=seed), size=None,
                        boxes=[[None, [32, 32, 64, 64]]])
        assert (model.seen[0][1][0, 3, :8, :8] > 0).all() and (model.seen[-1][1][0, 3, 8:, 8:] > 0).all()
    pixels = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    pixels[:, :, 1:7, 1:7] = 230  # an object in the top-left quarter
    picture = data.to_float(pixels)
    for seed in range(4):
        model.seen.clear()
        added = sample.generate(model, config, [["red cube"]], SampleRequest(steps=5, seed=seed), size=None,
                                start=picture)
        assert (model.seen[0][1][0, 3, 8:, 8:] > 0).all()  # the free quarter
        assert torch.equal(added[0, :, :8, :8], picture[0, :, :8, :8])  # the picture's object kept
    found = C.objects_on(torch.zeros(3, 16, 16), picture)[0, 0]
    assert found[1:7, 1:7].all() and not found[12:, :].any() and not found[:, 12:].any()  # grown as training's boxes


@pytest.mark.parametrize("boxes, message", [
    ([[[0, 0, 70, 40], None], None], r"box \[0, 0, 70, 40\] of 'red cube' \(image 0, object 0\) lies outside the "
                                     "64x64 frame"),
    ([[[8, 8, 40, 40], [40, 8, 60, 64]], None], r"'blue sphere' \(image 0, object 1\) is 20x56 pixels, too small to "
                                                "hold it: the model's training boxes of a blue sphere are at least 28"),
    ([[[8, 8, 40, 40], [12, 12, 44, 44]], None], r"'blue sphere' \(image 0, object 1\) lies 77% under the boxes of "
                                                 "earlier objects; the model allows at most 50%"),
    ([[[8, 8, 40.5, 40], None], None], "must be four whole numbers y0, x0, y1, x1"),
    ([[[8, 8, 40, 40]], None], r"image 0: give one box or None per object of \['red cube', 'blue sphere'\]"),
    ([None], "1 box lists for 2 images"),
])
def test_a_bad_box_is_a_one_line_error_naming_the_object_and_the_limit(layout_model, config, boxes, message):
    with pytest.raises(ValueError, match=message) as err:
        sample.generate(layout_model, config, SCENES, REQUEST, boxes=boxes)
    assert "\n" not in str(err.value)


def test_boxes_and_pictures_need_a_model_that_can_take_them(config):
    with pytest.raises(ValueError, match="boxes need a layout model"):
        sample.generate(canvas_model(), config, SCENES, REQUEST, boxes=BOXES)
    unplaced = sample.generate(canvas_model(), config, SCENES, REQUEST, boxes=[[None, None], None])  # a layout file
    assert torch.equal(unplaced, sample.generate(canvas_model(), config, SCENES, REQUEST))  # without boxes: any model
    with pytest.raises(ValueError, match="adding to a picture needs a canvas model"):
        sample.generate(small_model(), config, SCENES, REQUEST, start=torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"start must be a tensor \(2, 3, 16, 16\)"):
        sample.generate(canvas_model(True), config, SCENES, REQUEST, start=torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"start must hold floats in \[-1, 1\]"):
        sample.generate(canvas_model(True), config, SCENES, REQUEST, start=torch.full((2, 3, 16, 16), 2.0))


@pytest.fixture(scope="module")
def run(tmp_path_factory, layout_model):
    root = tmp_path_factory.mktemp("root")
    (root / "objects.json").write_text(json.dumps(L.objects_dict()))
    return make_run(tmp_path_factory.mktemp("run") / "run", root, model=layout_model)


def pngs(folder, n: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / f"{i}.png")) for i in range(n)]


def test_sample_layout_draws_the_file_and_records_its_boxes(run, tmp_path, capsys):
    layout = tmp_path / "two scenes.json"
    layout.write_text(json.dumps([[{"object": o, **({"box": b} if b else {})} for o, b in zip(objects, boxes)]
                                  for objects, boxes in zip(SCENES, BOXES)]))
    out = tmp_path / "out"
    assert main(["sample", "--run", str(run), "--layout", str(layout), "--out", str(out), "--steps", "3",
                 "--seed", "2", "--frames", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "two scenes" and metrics["boxes"] == BOXES and metrics["conditions"] == SCENES
    assert (out / "grid_two scenes.png").is_file() and (out / "captions_two scenes.png").is_file()
    ema = runs.load_model(run)[0]
    expected = sample.generate(ema, json.loads((run / "config.json").read_text())["scheduler"], SCENES, REQUEST,
                               boxes=BOXES)
    for got, want in zip(pngs(out / "images" / "two scenes", 2), data.to_uint8(expected).permute(0, 2, 3, 1).numpy()):
        np.testing.assert_array_equal(got, want)
    capsys.readouterr()
    layout.write_text(json.dumps([[{"object": "red cube", "box": [0, 0, 10, 64]}]]))
    assert main(["sample", "--run", str(run), "--layout", str(layout), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "too small to hold it" in err and err.count("\n") == 1 and not (tmp_path / "bad").exists()
    layout.write_text(json.dumps([["red cube"]]))
    assert main(["sample", "--run", str(run), "--layout", str(layout), "--out", str(tmp_path / "bad")]) == 2
    assert 'scene 0: give a list of {"object": NAME' in capsys.readouterr().err


def course_like_picture(path) -> np.ndarray:
    """A smooth 320x240 RGBA picture, the course's format; returns its RGB pixels."""
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([80 + x * 0.3, 90 + y * 0.4, 120 + 0 * x], -1).astype(np.uint8)
    Image.fromarray(np.concatenate([rgb, np.full((240, 320, 1), 255, np.uint8)], -1), "RGBA").save(path)
    return rgb


def test_add_keeps_the_picture_outside_the_box_and_the_pipeline_draws_the_same(run, tmp_path, capsys):
    picture = tmp_path / "scene.png"
    rgb = course_like_picture(picture)
    out = tmp_path / "added"
    assert main(["add", "--run", str(run), "--image", str(picture), "--labels", "red cube", "--box", "16,16,48,48",
                 "--out", str(out), "--steps", "3", "--seed", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["added"] == ["red cube"] and metrics["boxes"] == [[16, 16, 48, 48]] and metrics["seed"] == 5
    added = np.asarray(Image.open(out / "images" / "scene" / "0.png")).astype(float)
    # the picture as the 16x16 model reads it, shown at 64x64 like every output
    read = sample.resize(data.to_float(torch.from_numpy(data.read_image(picture, 16)))[None], 64)
    before = data.to_uint8(read)[0].permute(1, 2, 0).numpy().astype(float)
    outside = ~inside([12, 12, 52, 52], 64).numpy()  # the box grown by the resize's reach
    assert np.abs(added - before)[outside].mean() < 0.5
    assert np.abs(added - before)[~outside].mean() > 1  # something was drawn

    pipe = CddpmPipeline(unet=runs.load_model(run)[0], scheduler=sample.make_sampler(
        "dpmsolver", json.loads((run / "config.json").read_text())["scheduler"]))
    pipe.set_progress_bar_config(disable=True)
    image = pipe(["red cube"], num_inference_steps=3, seed=5, boxes=[[[16, 16, 48, 48]]], image=picture).images[0]
    np.testing.assert_array_equal(np.asarray(image), added.astype(np.uint8))
    for source in (Image.open(picture), torch.from_numpy(rgb).permute(2, 0, 1) / 255):  # the same loader
        again = pipe(["red cube"], num_inference_steps=3, seed=5, boxes=[[[16, 16, 48, 48]]], image=source).images[0]
        np.testing.assert_array_equal(np.asarray(again), added.astype(np.uint8))
    placed = pipe(SCENES, num_inference_steps=3, seed=2, boxes=BOXES, output_type="pt").images
    torch.testing.assert_close(placed * 2 - 1, sample.generate(pipe.unet, pipe.scheduler, SCENES, REQUEST, boxes=BOXES))

    capsys.readouterr()
    assert main(["add", "--run", str(run), "--image", str(picture), "--labels", "red cube,blue sphere", "--box",
                 "16,16,48,48", "--out", str(tmp_path / "bad")]) == 2
    assert "1 --box for 2 objects" in capsys.readouterr().err
    assert main(["add", "--run", str(run), "--image", str(tmp_path / "none.png"), "--labels", "red cube", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "--image" in capsys.readouterr().err and not (tmp_path / "bad").exists()
