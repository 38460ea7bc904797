"""Canvas models: training pairs from i-CLEVR's one-object-at-a-time naming, the empty floor, stage-by-stage sampling."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cddpm import canvas as C
from cddpm import labels as L
from cddpm import runs, sample
from cddpm.data import ICLEVRDataset, load_mapping
from cddpm.diffusion import train_scheduler
from cddpm.model import ConditionalUNet, ModelConfig, preset
from cddpm.sample import SampleRequest
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
    assert [rows for rows, _ in plan] == [[0, 1, 2], [1, 2], [1]]
    assert L.decode(plan[1][1]) == [["gray cube"], ["red cube"]]
    assert L.decode(plan[2][1]) == [["blue cylinder"]]


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
                      warmup=5, p_uncond=0.0, log_every=1, save_every=100, prediction_type="epsilon")
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    x, label, base = trainer.batches(0)
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
    whole = SampleRequest(steps=10, edit_threshold=0)
    images = sample.generate(model, dict(train_scheduler().config), conditions, whole, size=None)
    expected = torch.tensor([sum(L.INDEX[o] for o in c) / 72 for c in conditions])
    assert torch.allclose(images.mean((1, 2, 3)), expected, atol=0.02)  # each pass added its object's value
    assert [n for n, _ in model.seen] == [3] * 10 + [2] * 10 + [1] * 10  # one pass per object, rows that need it
    assert torch.equal(model.seen[0][1], torch.zeros(3, 3, 16, 16))  # the first pass starts on the empty floor
    model.seen.clear()
    one = sample.generate(model, dict(train_scheduler().config), conditions[2:], whole, size=None)
    torch.testing.assert_close(one, images[2:])  # batching does not change an image
    strip = sample.denoise_frames(model, dict(train_scheduler().config), conditions[2], 5, whole, size=None)
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


LAYOUT = dataclasses.replace(MICRO, layout=True)


def test_boxes_surround_what_an_image_adds_and_masks_mark_them():
    before = torch.full((2, 3, 32, 32), 100, dtype=torch.uint8)
    after = before.clone()
    after[0, :, 10:16, 20:24] = 220  # an object
    after[0, :, 16:18, 24:27] = 60   # its shadow
    box = C.boxes(before, after)
    y0, x0, y1, x1 = box[0].tolist()
    assert y0 <= 10 and x0 <= 20 and y1 >= 18 and x1 >= 27  # object and shadow inside
    assert y0 >= 10 - 4 and x0 >= 20 - 4 and y1 <= 18 + 4 and x1 <= 27 + 4  # grown by the 5x5 windows only
    assert box[1].tolist() == [0, 0, 32, 32]  # nothing added: the whole frame
    mask = C.box_mask(box, 32)
    assert mask.shape == (2, 1, 32, 32) and set(mask.unique().tolist()) == {-1.0, 1.0}
    assert (mask[0] > 0).sum() == (y1 - y0) * (x1 - x0) and mask[0, 0, y0, x0] == 1 and mask[0, 0, y1 % 32, 0] == -1


def test_layout_table_keeps_each_class_to_its_own_boxes():
    box = torch.tensor([[0, 0, 4, 4], [8, 8, 12, 12], [1, 1, 5, 5]])
    classes = torch.tensor([3, 7, 3])
    table = C.layout_table(box, classes, torch.Generator().manual_seed(0))
    assert table.shape == (L.NUM_CLASSES, C.LAYOUT_PER_CLASS, 4)
    assert {tuple(b) for b in table[3].tolist()} == {(0, 0, 4, 4), (1, 1, 5, 5)}
    assert {tuple(b) for b in table[7].tolist()} == {(8, 8, 12, 12)}
    assert {tuple(b) for b in table[0].tolist()} <= {tuple(b) for b in box.tolist()}  # unseen class: any box


def test_place_keeps_new_objects_off_earlier_ones():
    table = torch.zeros(L.NUM_CLASSES, C.LAYOUT_PER_CLASS, 4, dtype=torch.long)
    table[5, ::2] = torch.tensor([0, 0, 8, 8])    # half the boxes on the earlier object
    table[5, 1::2] = torch.tensor([8, 8, 16, 16])  # half free
    occupied = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    occupied[:2, :, :8, :8] = True
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    box = C.place(table, torch.tensor([5, 5, 5]), occupied, gens)
    assert box[:2].tolist() == [[8, 8, 16, 16]] * 2
    again = C.place(table, torch.tensor([5, 5, 5]), occupied, [torch.Generator().manual_seed(s) for s in range(3)])
    assert torch.equal(box, again)  # the row's generator decides
    table[5, 1::2] = torch.tensor([2, 2, 10, 10])  # no free box: the one that overlaps least
    assert C.place(table, torch.tensor([5]), occupied[:1], gens[:1]).tolist() == [[2, 2, 10, 10]]


def test_a_layout_model_reads_its_box_and_needs_a_canvas():
    with pytest.raises(ValueError, match="canvas=True"):
        ModelConfig(layout=True)
    torch.manual_seed(0)
    model = ConditionalUNet(LAYOUT).eval()
    x, t, label = torch.randn(2, 3, 16, 16), torch.tensor([500, 500]), L.encode_batch([["red cube"]] * 2)
    with pytest.raises(ValueError, match="box mask"):
        model(x, t, label, torch.zeros(2, 3, 16, 16))
    box = C.box_mask(torch.tensor([[2, 2, 8, 8], [8, 8, 14, 14]]), 16)
    with torch.no_grad():
        a = model(x, t, label, torch.cat([torch.zeros(2, 3, 16, 16), box], 1))
        b = model(x, t, label, torch.cat([torch.zeros(2, 3, 16, 16), box.flip(0)], 1))
    assert not torch.allclose(a, b)
    assert model.layout_boxes.shape == (L.NUM_CLASSES, C.LAYOUT_PER_CLASS, 4) and "layout_boxes" in model.state_dict()


def test_layout_training_gives_each_pair_its_box_learns_and_saves_the_table(tmp_path):
    root = scenes_root(tmp_path / "data")
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=LAYOUT, max_steps=120, batch_size=6,
                      lr=3e-3, warmup=5, p_uncond=0.0, log_every=1, save_every=100, prediction_type="epsilon")
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    x, label, base = trainer.batches(0)
    assert base.shape == (6, 4, 16, 16)
    inside = base[:, 3:] > 0
    changed = (x - base[:, :3]).abs().amax(1, keepdim=True) > 0
    assert (changed & ~inside).sum() == 0 and inside.any((1, 2, 3)).all()  # every change lies in the box
    losses = []
    train(cfg, on_log=lambda r: losses.append(r["loss"]))
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
    model, _, _ = runs.load_model(tmp_path / "run")
    torch.testing.assert_close(model.layout_boxes, trainer.net.layout_boxes)  # the table travels with the weights
    assert model.layout_boxes.any()


class BoxPainter(Painter):
    """Paints its object's value over the whole image; the composite must keep only the box."""

    def __init__(self):
        super().__init__()
        self.config = dataclasses.replace(LAYOUT)
        table = torch.zeros(L.NUM_CLASSES, C.LAYOUT_PER_CLASS, 4, dtype=torch.long)
        table[:] = torch.tensor([[0, 0, 8, 8], [8, 8, 16, 16]]).repeat(C.LAYOUT_PER_CLASS // 2, 1)
        self.register_buffer("layout_boxes", table)

    def forward(self, x, t, labels, canvas):
        eps = super().forward(x, t, labels, canvas[:, :3] + 0.5 * (canvas[:, 3:] + 1))
        self.seen[-1] = (len(x), canvas.clone())
        return eps


def changed_by_two_objects(model: torch.nn.Module) -> torch.Tensor:
    """(16, 16) bool: where a painter's sample of two objects differs from the empty floor."""
    images = sample.generate(model, dict(train_scheduler().config), [["cyan cube", "gray cylinder"]],
                             SampleRequest(steps=10), size=None)
    return images[0].abs().amax(0) > 0.2


def test_layout_sampling_places_each_object_in_a_free_box_and_keeps_only_the_box():
    model = BoxPainter()
    changed = changed_by_two_objects(model)
    quadrants = [changed[:8, :8].all(), changed[8:, 8:].all()]
    assert all(quadrants) and not changed[:8, 8:].any() and not changed[8:, :8].any()  # two boxes, nothing else
    boxes_seen = [c[:, 3] > 0 for _, c in model.seen]
    assert not (boxes_seen[0] & boxes_seen[-1]).any()  # the second object went to the other (free) box


def test_boxes_follow_a_change_of_light_and_rise_above_grain():
    from cddpm.render import raycast as R
    from cddpm.render import scenes as S

    thing = S.Thing("red cube", "rubber", "large", 0.5, 0.5)
    shots = R.renderer(64, R.SAMPLES).render(S.batch([[], [thing]])).images  # the floor, then the floor and a cube
    floor, cube = (torch.from_numpy(shots).permute(0, 3, 1, 2).double() / 255) ** 2  # linear light
    exact = C.boxes(floor[None].sqrt() * 2 - 1, cube[None].sqrt() * 2 - 1)[0]
    assert exact.tolist() == C.mask_boxes(C.changed(floor[None].sqrt() * 2 - 1, cube[None].sqrt() * 2 - 1))[0].tolist()
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    light = 1.25 - 0.15 * x + 0.1 * y  # a brighter lamp, moved a little
    grain = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.double) * 3 / 255
    relit = ((cube * light).clamp(0, 1).sqrt() + grain) * 2 - 1
    before = (floor.sqrt() * 2 - 1)[None].float()
    box = C.boxes(before, relit[None].float())[0]
    assert (box - exact).abs().max() <= 1 and exact.tolist() != [0, 0, 64, 64]
    naive = C.mask_boxes(C.changed(before, relit[None].float()))[0]  # no light fit: the whole frame changed
    assert (naive[2:] - naive[:2]).prod() > C.MAX_BOX_AREA * 64 * 64


def test_boxes_on_a_realistic_render_match_its_exact_boxes(tmp_path):
    from cddpm import render
    from cddpm.data import to_float
    from cddpm.render import raycast as R
    from cddpm.render import scenes as S

    # 16 scenes: fewer leave traces of objects in the median floor
    root = render.render_dataset(tmp_path / "r", scenes=16, seed=1, realistic=True, workers=1)
    names, found = C.root_boxes(root, 64)
    mapping = load_mapping(root)
    exact = {}
    for i, things in enumerate(S.layout([(render.SCENE, i) for i in range(16)],
                                        [mapping[f"CLEVR_train_{i:06d}_2.png"] for i in range(16)], seed=1)):
        # the scene's own camera and lights, no per-image light change or grain, from its own empty floor up
        shots = R.Renderer(64, R.SAMPLES, render.scene_view(1, (render.SCENE, i))).render(
            S.batch([things[:k] for k in range(4)])).images
        shots = to_float(torch.from_numpy(shots).permute(0, 3, 1, 2))
        box = C.mask_boxes(C.changed(shots[:3], shots[1:]))
        exact.update({f"CLEVR_train_{i:06d}_{k}.png": box[k] for k in range(3)})
    truth = torch.stack([exact[names[i]] for i in found.index.tolist()])
    inter = (torch.minimum(found.box[:, 2:], truth[:, 2:]) - torch.maximum(found.box[:, :2], truth[:, :2])).clamp(min=0)
    area = lambda b: (b[:, 2:] - b[:, :2]).prod(1)  # noqa: E731
    iou = inter.prod(1) / (area(found.box) + area(truth) - inter.prod(1))
    assert len(iou) == 48 and (iou >= 0.9).float().mean() >= 0.85 and iou.min() >= 0.7, iou
    assert found.plausible.all() and found.step.tolist() == [0, 1, 2] * 16


def test_implausible_boxes_stay_out_of_the_layout_table(tmp_path):
    from PIL import Image

    root = scenes_root(tmp_path / "data")
    for s in range(6):  # a 3x3 square per object, and scene 1 starts with a checkerboard: no one object's box
        pixels = torch.full((16, 16, 3), 100, dtype=torch.uint8)
        for k in range(3):
            pixels[5 * k:5 * k + 3, 2 * s:2 * s + 3] = 220
            if (s, k) == (1, 0):
                pixels[2:14, 2:14] = torch.tensor([40, 220])[(torch.arange(12)[:, None] + torch.arange(12)) % 2, None]
            Image.fromarray(pixels.numpy()).save(root / "iclevr" / f"CLEVR_train_{s:06d}_{k}.png")
            pixels[2:14, 2:14] = 100 if (s, k) == (1, 0) else pixels[2:14, 2:14]
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    found = C.training_boxes(ds.images, parents)
    big = found.index[~found.plausible].tolist()
    # the checkerboard, and the image that extends it (its parent differs from it all over)
    assert [list(ds.mapping)[i] for i in big] == ["CLEVR_train_000001_0.png", "CLEVR_train_000001_1.png"]
    summary = found.summary()
    assert len(summary) == 3 and summary[0].startswith("step 0: 6 boxes") and ", 1 larger than" in summary[0]
    assert ", 1 larger than" in summary[1] and ", 0 larger than" in summary[2]
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=LAYOUT, max_steps=1, batch_size=6)
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    assert torch.equal(trainer.batches.boxes[big], found.box[~found.plausible])  # still the images' own boxes in training
    table = trainer.net.layout_boxes
    assert (table[..., 2:] - table[..., :2]).prod(-1).max() <= C.MAX_BOX_AREA * 16 * 16
    assert {tuple(b) for b in table.flatten(0, 1).tolist()} == {tuple(b) for b in found.box[found.plausible].tolist()}
    with pytest.raises(ValueError, match="cddpm boxes"):
        C.layout_table(found.box[:0], found.step[:0], torch.Generator())


def test_the_boxes_command_writes_the_trainers_boxes(tmp_path, capsys):
    from cddpm import cli, render

    root = render.render_dataset(tmp_path / "r", scenes=4, seed=2, size=32, realistic=True, workers=1)
    out = tmp_path / "boxes.json"
    assert cli.main(["boxes", "--data", str(root), "--json", str(out), "--size", "32"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[:3]] == ["step 0", "step 1", "step 2"] and printed[3] == str(out)
    written = json.loads(out.read_text())
    ds = ICLEVRDataset(root, size=32, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=dataclasses.replace(LAYOUT, sample_size=32),
                      max_steps=1, batch_size=4)
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    said = capsys.readouterr().err.splitlines()  # training starts by saying what the command said
    assert [line for line in said if line.startswith("layout boxes, ")] == [f"layout boxes, {x}" for x in printed[:3]]
    assert list(written) == list(ds.mapping)  # every image of this root is a training image
    assert written == {name: trainer.batches.boxes[i].tolist() for i, name in enumerate(ds.mapping)}

    def refused(json_path, *extra) -> str:
        assert cli.main(["boxes", "--data", str(root), "--json", str(json_path), "--size", "32", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cddpm boxes: error: --json "), err
        return err

    assert "pass --force" in refused(out)
    assert cli.main(["boxes", "--data", str(root), "--json", str(out), "--size", "32", "--force"]) == 0
    assert json.loads(out.read_text()) == written
    mine = tmp_path / "notes.json"
    mine.write_text('{"not": "boxes"}')
    assert "not a boxes file" in refused(mine, "--force") and mine.read_text() == '{"not": "boxes"}'
    train_json = (root / "train.json").read_text()
    assert "part of --data" in refused(root / "train.json", "--force")
    assert "part of --data" in refused(root / "iclevr" / "boxes.json")
    assert (root / "train.json").read_text() == train_json and not (root / "iclevr" / "boxes.json").exists()


def test_a_budgeted_layout_run_finds_its_boxes_once(tmp_path, capsys, monkeypatch):
    from cddpm import render
    from cddpm.train import train

    root = render.render_dataset(tmp_path / "r", scenes=4, seed=2, size=32, workers=1)
    calls, real = [], C.training_boxes
    monkeypatch.setattr(C, "training_boxes", lambda *a: calls.append(1) or real(*a))
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=dataclasses.replace(LAYOUT, sample_size=32),
                      minutes=5, max_steps=2, batch_size=4, log_every=1)
    assert train(cfg)["step"] == 2
    assert calls == [1]  # the speed probe's throwaway Trainer and the run share one extraction
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("layout boxes, step 0")]
    assert len(said) == 1


def test_iou_pairs_box_i_with_box_i():
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [0, 5, 10, 15]])  # same, apart, half across
    assert C.iou(a, b).tolist() == pytest.approx([1.0, 0.0, 50 / 150])


CROP = dataclasses.replace(LAYOUT, crop=8, patch_size=1)


def test_windows_lie_in_the_frame_centred_on_their_boxes_and_paste_undoes_cut():
    box = torch.tensor([[4, 4, 12, 12], [0, 0, 3, 3], [13, 10, 16, 16]])
    corner = C.window(box, 8, 16)
    assert corner.tolist() == [[4, 4], [0, 0], [8, 8]]  # centred, else moved inside the frame
    images = torch.randn(3, 3, 16, 16)
    patches = C.cut(images, corner, 8)
    assert patches.shape == (3, 3, 8, 8) and torch.equal(patches[2], images[2, :, 8:, 8:])
    assert torch.equal(C.paste(images, patches, corner), images)
    pasted = C.paste(images, torch.zeros_like(patches), corner)
    assert pasted[0, :, 4:12, 4:12].eq(0).all() and torch.equal(pasted[0, :, :4], images[0, :, :4])
    where = C.position(corner, 8, 16)
    assert where.shape == (3, 2, 8, 8) and where[1, :, 0, 0].tolist() == [-1, -1] and where[2, :, -1, -1].tolist() == [1, 1]
    assert torch.equal(where[0, 0, :, 0], where[0, 0, :, 5]) and torch.equal(where[0, 1, 0], where[0, 1, 3])  # rows, columns


def test_a_crop_model_needs_a_layout_and_a_window_the_fold_divides():
    with pytest.raises(ValueError, match="crop=8 needs layout=True"):
        dataclasses.replace(MICRO, crop=8)
    with pytest.raises(ValueError, match="patch_size=2"):
        dataclasses.replace(LAYOUT, crop=7)
    with pytest.raises(ValueError, match="crop=32 needs"):
        dataclasses.replace(LAYOUT, crop=32)  # larger than the frame
    model = ConditionalUNet(CROP).eval()
    assert model.canvas_channels == 6 and model.unet.config.sample_size == 8
    with pytest.raises(ValueError, match="cddpm.canvas.around"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([5, 5]), L.encode_batch([["red cube"]] * 2),
              torch.zeros(2, 4, 8, 8))


def test_crop_training_cuts_each_pair_and_its_parent_around_the_box_and_learns(tmp_path):
    root = scenes_root(tmp_path / "data")
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=CROP, max_steps=120, batch_size=6,
                      lr=3e-3, warmup=5, p_uncond=0.0, log_every=1, save_every=100, prediction_type="epsilon")
    with pytest.raises(ValueError, match="hflip"):
        dataclasses.replace(cfg, hflip=True)
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    x, label, base = trainer.batches(0)
    assert x.shape == (6, 3, 8, 8) and base.shape == (6, 6, 8, 8)
    index = trainer.batches._order[:6]
    box = trainer.batches.boxes[index]
    corner = C.window(box, 8, 16)
    whole = ds.images[index].float() / 127.5 - 1
    assert torch.equal(x, C.cut(whole, corner, 8))
    assert torch.equal(base[:, 3:4], C.cut(C.box_mask(box, 16), corner, 8))
    assert torch.equal(base[:, 4:], C.position(corner, 8, 16))
    changed = (x - base[:, :3]).abs().amax(1, keepdim=True) > 0
    assert (changed & ~(base[:, 3:4] > 0)).sum() == 0  # what each image adds lies in its box, in the window
    losses = []
    train(cfg, on_log=lambda r: losses.append(r["loss"]))
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
    model, config, _ = runs.load_model(tmp_path / "run")
    images = sample.generate(model, config["scheduler"], [["red cube", "blue sphere"]] * 2, SampleRequest(steps=4),
                             size=None)
    assert images.shape == (2, 3, 16, 16)


class CropPainter(BoxPainter):
    """BoxPainter drawing 8x8 windows: it must be handed the window around each box, pasted back in place."""

    def __init__(self):
        super().__init__()
        self.config = dataclasses.replace(CROP)

    def forward(self, x, t, labels, canvas):
        assert x.shape[-2:] == canvas.shape[-2:] == (8, 8) and canvas.shape[1] == 6
        eps = super().forward(x, t, labels, canvas[:, :4])
        self.seen[-1] = (len(x), canvas.clone())
        return eps


def test_crop_sampling_draws_each_object_in_its_window_and_leaves_the_frame():
    model = CropPainter()
    changed = changed_by_two_objects(model)
    assert changed[:8, :8].all() and changed[8:, 8:].all() and not changed[:8, 8:].any() and not changed[8:, :8].any()
    corners = sorted(round(c[0, 4, 0, 0].item(), 4) for _, c in model.seen[::10])  # the windows' top rows
    assert corners == [-1.0, round(8 * 2 / 15 - 1, 4)]


ZOOM = dataclasses.replace(CROP, zoom=1.5)


def test_zoomed_windows_follow_the_box_size_and_resample_in_and_out():
    with pytest.raises(ValueError, match="zoom=1.5 needs crop > 0"):
        dataclasses.replace(LAYOUT, zoom=1.5)
    box = torch.tensor([[4, 4, 12, 12], [0, 0, 3, 3], [13, 10, 16, 16], [2, 2, 14, 10]])
    corner, side = C.zoomed(box, 8, 16, 1.0)
    assert side.tolist() == [8, 4, 6, 12]  # the longer side, at least crop // 2
    assert corner.tolist() == [[4, 4], [0, 0], [10, 10], [2, 0]]  # centred, else moved inside the frame
    images = torch.randn(4, 3, 16, 16)
    fixed, eight = C.window(box, 8, 16), torch.full((4,), 8)
    assert torch.allclose(C.cut(images, fixed, 8, eight), C.cut(images, fixed, 8), atol=1e-6)  # a window of crop
    assert torch.allclose(C.position(fixed, 8, 16, eight), C.position(fixed, 8, 16))           # pixels is cut as is
    assert torch.allclose(C.paste(images, C.cut(images, fixed, 8), fixed, eight), images, atol=1e-6)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    ramp = torch.stack([x, y, x + y])[None].repeat(4, 1, 1, 1)  # linear: resampling keeps it up to the border
    patches = C.cut(ramp, corner, 8, side)
    assert patches.shape == (4, 3, 8, 8)
    back = C.paste(torch.full_like(ramp, 5.0), patches, corner, side)
    inside = back[:, :1] != 5
    assert inside.sum((1, 2, 3)).tolist() == (side ** 2).tolist()  # each window's pixels, nothing else
    assert (back - ramp).abs()[inside.expand_as(back)].max() < 0.15  # within a pixel's step (2/15)
    where = C.position(corner, 8, 16, side)  # the centres of the resampled pixels, in the frame's [-1, 1]
    assert where[3, 0, 0, 0].item() == pytest.approx((2 + 0.5 * 12 / 8 - 0.5) * 2 / 15 - 1)


class ZoomPainter(BoxPainter):
    """BoxPainter drawing 8x8 windows resampled from 9x9 pixels around 6x6 boxes, pasted back into the frame."""

    def __init__(self):
        super().__init__()
        self.config = dataclasses.replace(ZOOM)
        self.layout_boxes[:] = torch.tensor([[0, 0, 6, 6], [10, 10, 16, 16]]).repeat(C.LAYOUT_PER_CLASS // 2, 1)

    def forward(self, x, t, labels, canvas):
        assert x.shape[-2:] == canvas.shape[-2:] == (8, 8) and canvas.shape[1] == 6
        eps = super().forward(x, t, labels, canvas[:, :4])
        self.seen[-1] = (len(x), canvas.clone())
        return eps


def test_zoom_sampling_draws_in_the_resampled_window_and_keeps_only_the_box():
    model = ZoomPainter()
    changed = changed_by_two_objects(model)
    boxes = torch.zeros(16, 16, dtype=torch.bool)
    boxes[:6, :6] = boxes[10:, 10:] = True
    assert torch.equal(changed, boxes)  # each box drawn whole, the frame around it as it was
    corners = sorted(round(c[0, 4, 0, 0].item(), 4) for _, c in model.seen[::10])  # the windows' first rows
    assert corners == [round((0.5 * 9 / 8 - 0.5) * 2 / 15 - 1, 4), round((7 + 0.5 * 9 / 8 - 0.5) * 2 / 15 - 1, 4)]


def test_zoom_training_cuts_each_pair_around_its_box_at_the_box_size(tmp_path):
    root = scenes_root(tmp_path / "data")
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model=ZOOM, max_steps=2, batch_size=6)
    ds = ICLEVRDataset(root, size=16, preload=True)
    parents, added = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    trainer = Trainer(cfg, ds.images, added, parents=parents)
    x, _, base = trainer.batches(0)
    box = trainer.batches.boxes[trainer.batches._order[:6]]
    corner, side = C.zoomed(box, 8, 16, 1.5)
    assert x.shape == (6, 3, 8, 8) and base.shape == (6, 6, 8, 8)
    whole = ds.images[trainer.batches._order[:6]].float() / 127.5 - 1
    assert torch.equal(x, C.cut(whole, corner, 8, side))
    assert torch.equal(base[:, 4:], C.position(corner, 8, 16, side))
