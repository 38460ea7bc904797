"""Placement and adding with a trained layout run, judged (docs/placement.md, issue 22's targets).

Boxes come from the root's held-out ground-truth scenes (:func:`cddpm.data.held_out`, their boxes as a layout model
learns them: :func:`cddpm.canvas.training_boxes`): condition i of the split takes the boxes of steps 0..k-1 of the
next held-out scene whose boxes the model accepts for its objects (:func:`cddpm.sample.check_boxes`); with
``--boxes class`` each object takes the next held-out box of an object of its own class instead. Reports

- ``in_box``: the share of requested objects whose drawn region (what its pass changed, :func:`cddpm.canvas.changed`)
  has IoU >= 0.5 with its box (target >= 0.95), and the mean IoU;
- ``placed`` / ``unplaced``: the judge's top-k and exact-set on the placed scenes and on plain sampling of the same
  conditions and seed (target: top-k within 0.02);
- ``added``: each held-out scene's image k-1 (ground truth) with image k's object added in image k's box, judged
  against image k's objects (``truth``: image k itself), and the mean |difference| outside the box in grey levels
  (target < 1); ``added_unboxed``: the same object placed by the model, away from what it finds on the picture.

    python benchmarks/placement.py --run outputs/demo-native/runs/demo --evaluator outputs/evaluator-default/checkpoint.pth \\
        --out /tmp/placement.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cddpm import canvas as C
from cddpm import labels as L
from cddpm import runs, sample
from cddpm.choices import IMAGE_SIZE
from cddpm.data import ICLEVRDataset, held_out, load_condition_lists, scene_step, to_float, to_uint8
from cddpm.evaluation.evaluator import Evaluator, evaluate_images

IOU = 0.5  # an object is in its box when its drawn region's box overlaps the requested one this much


def held_out_scenes(root: Path, cache: Path | None) -> tuple[torch.Tensor, list[list[str]], list[list[int]],
                                                               list[list[list[int]]]]:
    """The held-out images (uint8), their label lists, and per held-out scene (in name order) its images' indices
    and boxes by step."""
    ds = ICLEVRDataset(root, preload=True, cache_dir=cache)
    names = list(ds.mapping)
    index = torch.nonzero(held_out(names)).flatten().tolist()
    sub_names, lists = [names[i] for i in index], [ds.mapping[names[i]] for i in index]
    images = ds.images[index]
    parents, _ = C.pairs(sub_names, lists)
    found = C.training_boxes(images, parents)
    box = dict(zip(found.index.tolist(), found.box.tolist()))
    scenes: dict[str, dict[int, int]] = {}
    for i, name in enumerate(sub_names):
        scene, step = scene_step(name)
        if step is not None and i in box:
            scenes.setdefault(scene, {})[step] = i
    order = [scenes[s] for s in sorted(scenes) if sorted(scenes[s]) == list(range(len(scenes[s])))]
    return images, lists, [[s[k] for k in sorted(s)] for s in order], [[box[s[k]] for k in sorted(s)] for s in order]


def layouts(model, conditions, scene_boxes) -> tuple[list[list[list[int]]], int]:
    """Per condition the boxes of the next held-out scene that the model accepts for its objects; scenes skipped."""
    chosen, at, skipped = [], 0, 0
    for objects in conditions:
        while True:
            boxes = scene_boxes[at % len(scene_boxes)]
            at += 1
            if len(boxes) >= len(objects):
                try:
                    sample.check_boxes(model, [objects], [boxes[:len(objects)]])
                    chosen.append(boxes[:len(objects)])
                    break
                except ValueError:
                    pass
            skipped += 1
            if skipped > 100 * len(scene_boxes):
                raise ValueError(f"no held-out scene's boxes fit {objects}")
    return chosen, skipped


def class_pools(lists, scene_index, scene_boxes) -> dict[str, list[list[int]]]:
    """Per class, the boxes of the held-out scenes' objects of that class (each object's box at the step it was added)."""
    pools: dict[str, list[list[int]]] = {}
    for scene, boxes in zip(scene_index, scene_boxes):
        for k, (image, box) in enumerate(zip(scene, boxes)):
            seen = set(lists[scene[k - 1]]) if k else set()
            for name in (o for o in lists[image] if o not in seen):
                pools.setdefault(name, []).append(box)
    return pools


def class_layouts(model, conditions, pools) -> tuple[list[list[list[int]]], int]:
    """Per condition, for each object the next held-out box of its own class, the set retried until the model
    accepts it; sets refused."""
    at = dict.fromkeys(pools, 0)
    chosen, refused = [], 0
    for objects in conditions:
        while True:
            boxes = [pools[o][at[o] % len(pools[o])] for o in objects]
            for o in objects:
                at[o] += 1
            try:
                sample.check_boxes(model, [objects], [boxes])
                chosen.append(boxes)
                break
            except ValueError:
                refused += 1
                if refused > 100 * len(conditions):
                    raise ValueError(f"no held-out boxes of its classes fit {objects}") from None
    return chosen, refused


def pass_canvases(model, schedule, conditions, boxes, request) -> list[torch.Tensor]:
    """The images after each pass (stage) of a placed sampling: :func:`cddpm.sample.draw` yields, per pass, its
    starting noise, one state per step and then the composited images."""
    stride = len(schedule.timesteps) + 2
    gens = sample.generators(request.seed, range(len(conditions)))
    states = sample.draw(model, schedule, conditions, gens, request, boxes=boxes)
    return [x.float().cpu() for k, x in enumerate(states, 1) if k % stride == 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--evaluator", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None, help="root of the split and the held-out scenes (default: run's)")
    p.add_argument("--cache", type=Path, default=None, help="image cache folder (default: the root's .cache)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--boxes", choices=("scene", "class"), default="scene", help="scene: the next held-out scene's "
                   "boxes, step by step; class: for each object a held-out box of an object of its own class")
    p.add_argument("--adds", type=int, default=32, help="held-out scenes to add one object to")
    p.add_argument("--out", type=Path, required=True, help="JSON file of the results")
    args = p.parse_args()
    torch.manual_seed(0)
    model, config, folder = runs.load_model(args.run)
    root = args.data or Path(config["data"])
    judge = Evaluator.load(args.evaluator)
    request = sample.SampleRequest(steps=args.steps, guidance=args.guidance, seed=args.seed)
    schedule = sample.make_sampler(request.sampler, config["scheduler"], request.steps)
    conditions = load_condition_lists(root, args.split)
    start = time.perf_counter()
    images, lists, scene_index, scene_boxes = held_out_scenes(root, args.cache)
    if args.boxes == "scene":
        boxes, skipped = layouts(model, conditions, scene_boxes)
    else:
        boxes, skipped = class_layouts(model, conditions, class_pools(lists, scene_index, scene_boxes))

    canvases = pass_canvases(model, schedule, conditions, boxes, request)
    before, per_object = model.background.float().cpu().expand(len(conditions), -1, -1, -1), []
    for s, ((rows, _), after) in enumerate(zip(C.stages(conditions), canvases)):
        drawn = C.changed(before[rows], after[rows], request.edit_threshold, one_region=False)
        wanted = torch.tensor([boxes[i][s] for i in rows])
        per_object.append(torch.where(drawn.flatten(1).any(1), C.iou(C.mask_boxes(drawn), wanted), 0.0))
        before = after
    per_object = torch.cat(per_object)
    placed_images = canvases[-1].clamp(-1, 1)
    unplaced = sample.generate(model, schedule, conditions, request)
    labels = L.encode_batch(conditions)

    # adding: held-out image k-1 plus image k's object in image k's box (k = 1, 2 in turn)
    picks, added, add_boxes = [], [], []
    for j, scene in enumerate(scene_index):
        k = 1 + j % 2
        if len(picks) == args.adds or len(scene) <= k:
            continue
        new = [o for o in lists[scene[k]] if o not in lists[scene[k - 1]]]
        try:
            sample.check_boxes(model, [new], [[scene_boxes[j][k]]])
        except ValueError:
            continue
        picks.append((j, k))
        added.append(new)
        add_boxes.append([scene_boxes[j][k]])
    start_images = to_float(torch.stack([images[scene_index[j][k - 1]] for j, k in picks]))
    truth = [lists[scene_index[j][k]] for j, k in picks]
    result_boxed = sample.generate(model, schedule, added, request, boxes=add_boxes, start=start_images)
    result_free = sample.generate(model, schedule, added, request, start=start_images)
    outside = ~torch.stack([C.box_mask(torch.tensor(b), IMAGE_SIZE)[0, 0] > 0 for b in add_boxes])[:, None].expand(-1, 3, -1, -1)
    grey = (to_uint8(result_boxed).float() - to_uint8(start_images).float()).abs()
    wall = time.perf_counter() - start

    result = dict(
        run=str(args.run), checkpoint=folder.name, evaluator=str(args.evaluator), data=str(root), split=args.split,
        seed=args.seed, boxes=args.boxes, sampler=request.sampler, steps=schedule.num_inference_steps, guidance=args.guidance,
        objects=len(per_object), held_out_scenes=len(scene_boxes), scenes_skipped=skipped,
        in_box=round((per_object >= IOU).float().mean().item(), 4), mean_iou=round(per_object.mean().item(), 4),
        placed=evaluate_images(judge, placed_images, labels), unplaced=evaluate_images(judge, unplaced, labels),
        added=dict(**evaluate_images(judge, result_boxed, L.encode_batch(truth)),
                   outside_box_grey=round(grey[outside].mean().item(), 4)),
        added_unboxed=evaluate_images(judge, result_free, L.encode_batch(truth)),
        truth=evaluate_images(judge, to_float(torch.stack([images[scene_index[j][k]] for j, k in picks])),
                              L.encode_batch(truth)),
        wall_s=round(wall, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
