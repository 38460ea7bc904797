"""Canvas models: training pairs from i-CLEVR's one-object-at-a-time naming, the empty floor, stage-by-stage sampling."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from cddpm import canvas as C
from cddpm import labels as L
from cddpm import runs, sample
from cddpm.data import ICLEVRDataset, load_mapping
from cddpm.diffusion import train_scheduler
from cddpm.model import ConditionalUNet, preset
from cddpm.train import TrainConfig, Trainer, train

MICRO = preset("canvas64", sample_size=16, patch_size=2, block_out_channels=(16, 32), attention_levels=(1,),
               norm_num_groups=8)


def test_pairs_follow_the_naming_and_the_added_object():
    names = ["s_000_0.png", "s_000_1.png", "s_000_2.png", "t_1.png", "u_0.png", "u_1.png", "v_0.png", "lone.png"]
    lists = [["red cube"], ["red cube", "cyan sphere"], ["red cube", "cyan sphere", "gray cylinder"],
             ["blue cube", "green cube"],          # extends nothing (t_0.png absent) and holds two: not a pair
             ["red cube"], ["blue cube", "green cube"],  # u_1 is not u_0 plus one object
             ["yellow sphere", "purple cylinder"],       # two objects with no parent
             ["brown sphere"]]                           # one object, any name: drawn on the empty floor
    parent, added = C.pairs(names, lists)
    assert parent.tolist() == [C.EMPTY, 0, 1, C.NONE, C.EMPTY, C.NONE, C.NONE, C.EMPTY]
    assert L.decode(added) == [["red cube"], ["cyan sphere"], ["gray cylinder"], [], ["red cube"], [], [],
                               ["brown sphere"]]


def test_the_course_train_json_is_all_pairs(official):
    mapping = load_mapping(official)
    parent, added = C.pairs(list(mapping), list(mapping.values()))
    assert (parent != C.NONE).all() and (added.sum(1) == 1).all()
    assert (parent == C.EMPTY).sum() == len(mapping) // 3


def test_background_is_the_floor_under_moving_objects():
    floor = torch.full((3, 8, 8), 120, dtype=torch.uint8)
    images = floor.repeat(5, 1, 1, 1)
    for i in range(5):
        images[i, :, i, i] = 255  # an "object" somewhere else in every image
    assert torch.equal(C.background(images), floor)
    with pytest.raises(ValueError, match="NAME_0.png"):
        C.background(images[:0])


def test_stages_give_each_row_its_objects_in_order():
    plan = C.stages([["red cube"], ["cyan sphere", "gray cube", "blue cylinder"], ["green sphere", "red cube"]])
    assert [rows for rows, _, _ in plan] == [[0, 1, 2], [1, 2], [1]]
    assert L.decode(plan[1][1]) == [["gray cube"], ["red cube"]]
    assert [set(x) for x in L.decode(plan[1][2])] == [{"gray cube", "cyan sphere"}, {"green sphere", "red cube"}]


def test_a_canvas_model_needs_its_canvas_and_reads_it():
    torch.manual_seed(0)
    model = ConditionalUNet(MICRO).eval()
    x, t, label = torch.randn(2, 3, 16, 16), torch.tensor([500, 500]), L.encode_batch([["red cube"]] * 2)
    with pytest.raises(ValueError, match="canvas"):
        model(x, t, label)
    with torch.no_grad():
        a = model(x, t, label, torch.zeros(2, 3, 16, 16))
        b = model(x, t, label, torch.ones(2, 3, 16, 16))
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert model.background.shape == (3, 16, 16) and "background" in model.state_dict()


def scenes_root(path, scenes: int = 6):
    """Scenes of 1-3 objects in the i-CLEVR naming; image k+1 is image k with one more bright square."""
    from conftest import make_root
    from PIL import Image

    mapping = {}
    for s in range(scenes):
        objects = [L.CLASSES[(5 * s + k) % 24] for k in range(3)]
        for k in range(3):
            mapping[f"CLEVR_train_{s:06d}_{k}.png"] = objects[:k + 1]
    root = make_root(path, mapping, size=(16, 16), mode="RGB")
    for s in range(scenes):  # overwrite the random pixels with a structured scene
        pixels = torch.full((16, 16, 3), 100, dtype=torch.uint8)
        for k in range(3):
            pixels[4 * k:4 * k + 3, 3 * s % 13:3 * s % 13 + 3] = 40 * k + 120
            Image.fromarray(pixels.numpy()).save(root / "iclevr" / f"CLEVR_train_{s:06d}_{k}.png")
    return root


def test_training_pairs_each_image_with_its_parent_and_learns(tmp_path):
    root = scenes_root(tmp_path / "data")
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=MICRO, max_steps=120, batch_size=6, lr=3e-3,
                      warmup=5, p_uncond=0.0, log_every=1, save_every=100)
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    x, label, base = trainer.batch(0)
    assert x.shape == base.shape == (6, 3, 16, 16) and (label.sum(1) == 1).all()
    floor = ds.images[parents == C.EMPTY].median(0).values
    for image, target, canvas_image in zip(x, label, base):  # the canvas is the parent, or the floor
        i = next(i for i in range(len(ds)) if torch.equal(ds.images[i].float() / 127.5 - 1, image))
        expected = floor if parents[i] == C.EMPTY else ds.images[parents[i]]
        assert torch.equal(canvas_image, expected.float() / 127.5 - 1) and torch.equal(target, added[i])
    with pytest.raises(ValueError, match="canvas"):
        Trainer(cfg, ds.images, added)  # a canvas model without its pairs

    losses = []
    train(cfg, on_log=lambda r: losses.append(r["loss"]))
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
    model, _, _ = runs.load_model(tmp_path / "run")
    assert torch.equal(model.background, floor.float() / 127.5 - 1)  # saved with the weights


def test_resume_of_a_canvas_run_is_exact(tmp_path):
    root = scenes_root(tmp_path / "data")
    one_go = TrainConfig(data=str(root), out=str(tmp_path / "a"), model=MICRO, max_steps=6, batch_size=4, warmup=2,
                         log_every=1, save_every=3, hflip=True)
    train(one_go)
    pieces = dataclasses.replace(one_go, out=str(tmp_path / "b"))

    def crash(record):
        if record["step"] == 4:  # after step-3 was saved
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(pieces, on_log=crash)
    train(dataclasses.replace(pieces, resume=True))
    a = runs.load_weights(tmp_path / "a/checkpoints/step-6" / runs.EMA_FILE, "")
    b = runs.load_weights(tmp_path / "b/checkpoints/step-6" / runs.EMA_FILE, "")
    assert all(torch.equal(a[k], b[k]) for k in a)


class Painter(torch.nn.Module):
    """An exact canvas denoiser for x0 = canvas + (the added class index / 72): records what it was given."""

    def __init__(self):
        super().__init__()
        self.config = dataclasses.replace(MICRO)
        self.register_buffer("background", torch.zeros(3, 16, 16))
        self.register_buffer("alphas_cumprod", train_scheduler().alphas_cumprod)
        self.seen: list[tuple[int, torch.Tensor]] = []
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels, canvas):
        self.seen.append((len(x), canvas.clone()))
        x0 = canvas + (labels.argmax(1).float() / 72 * labels.amax(1))[:, None, None, None]
        ab = self.alphas_cumprod[t]
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()


def test_sampling_draws_one_object_per_pass_onto_the_last_image():
    conditions = [["red sphere"], ["cyan cube", "gray cylinder"], ["yellow sphere", "blue cube", "red cylinder"]]
    model = Painter()
    images = sample.generate(model, dict(train_scheduler().config), conditions, steps=10, size=None, edit_threshold=0)
    expected = torch.tensor([sum(L.INDEX[o] for o in c) / 72 for c in conditions])
    assert torch.allclose(images.mean((1, 2, 3)), expected, atol=0.02)  # each pass added its object's value
    assert [n for n, _ in model.seen] == [3] * 10 + [2] * 10 + [1] * 10  # one pass per object, rows that need it
    assert torch.equal(model.seen[0][1], torch.zeros(3, 3, 16, 16))  # the first pass starts on the empty floor
    model.seen.clear()
    one = sample.generate(model, dict(train_scheduler().config), conditions[2:], steps=10, size=None,
                          edit_threshold=0)
    torch.testing.assert_close(one, images[2:])  # batching does not change an image
    strip = sample.denoise_frames(model, dict(train_scheduler().config), conditions[2], frames=5, steps=10, size=None,
                                  edit_threshold=0)
    assert strip.shape == (5, 3, 16, 16)
    torch.testing.assert_close(strip[-1], images[2])


def test_composite_keeps_the_drawn_object_and_drops_faint_grain_elsewhere():
    canvas = torch.zeros(1, 3, 32, 32)
    grain = 0.05 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    drawn = canvas + grain
    drawn[:, :, 10:16, 10:16] = 0.8  # the new object
    kept = C.composite(canvas, drawn)
    assert torch.equal(kept[:, :, 10:16, 10:16], drawn[:, :, 10:16, 10:16])  # the object, edges included
    assert kept[:, :, 24:, 24:].abs().max() == 0  # far from it: the canvas
    assert torch.equal(C.composite(canvas, drawn, threshold=0), drawn)


def test_the_sample_cli_default_edit_threshold_is_the_librarys():
    import argparse

    from cddpm import cli

    parser = argparse.ArgumentParser()
    cli._add_sample(parser.add_subparsers())
    assert parser.parse_args(["sample", "--run", "r", "--split", "test", "--out", "o"]).edit_threshold == C.EDIT_THRESHOLD


def test_composite_keeps_one_region_so_a_wiped_or_ghost_object_does_not_count():
    canvas = torch.zeros(1, 3, 32, 32)
    canvas[:, :, 2:7, 2:7] = 0.5  # an earlier object
    drawn = canvas.clone()
    drawn[:, :, 18:26, 18:26] = 0.9  # the new object, the largest change
    drawn[:, :, 2:7, 2:7] = 0.0      # the pass also wiped the earlier one out
    kept = C.composite(canvas, drawn)
    assert torch.equal(kept[:, :, 18:26, 18:26], drawn[:, :, 18:26, 18:26])
    assert torch.equal(kept[:, :, 2:7, 2:7], canvas[:, :, 2:7, 2:7])  # restored from the canvas
    assert torch.equal(C.composite(canvas, drawn, one_region=False)[:, :, 2:7, 2:7], drawn[:, :, 2:7, 2:7])
