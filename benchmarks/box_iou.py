"""Do layout boxes survive Blender-like renders? IoU of every training image's box on a ``--realistic`` render.

Renders (or takes) a clean and a ``--realistic`` root of the same seed and compares, per step k, the boxes that
``cddpm boxes`` reports (:func:`cddpm.canvas.root_boxes`, the trainer's) on the realistic root with

- ``clean render``: the same image's box in the clean render (camera and lights not jittered, so objects and shadows
  sit a little elsewhere: this IoU also counts the jitter's true change of the box, which ``truth vs clean render``
  shows alone), and
- ``truth``: the exact box of the realistic image, from a render with the scene's own jittered camera and lights but
  without the per-image light change and grain, each image compared with its exact parent (the scene's own empty
  floor for k = 0): what a perfect extraction would give;

for the boxes of the method layout models use and for ``naive``: |child - parent| thresholded with no light fit,
against the median floor for k = 0 (the method before :func:`cddpm.canvas.relit`). Cheap image processing, no timing:

    python benchmarks/box_iou.py --scenes 300 --out /tmp/box_iou            # renders /tmp/box_iou/{clean,realistic}
    python benchmarks/box_iou.py --clean data/synthetic-iclevr --realistic data/realistic-iclevr
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cddpm import canvas as C
from cddpm import render
from cddpm.data import ICLEVRDataset, to_float
from cddpm.render import raycast as R
from cddpm.render import scenes as S

THRESHOLD = 0.9  # the target: IoU >= 0.9 for >= 95% of the training images


def naive_boxes(root: Path, size: int) -> torch.Tensor:
    """Boxes of every training image without the light fit: |child - parent| thresholded, median floor for k = 0."""
    ds = ICLEVRDataset(root, size=size, preload=True)
    parents, _ = C.pairs(list(ds.mapping), list(ds.mapping.values()))
    index = torch.nonzero(parents != C.NONE).flatten()
    before = C.parent_images(ds.images, parents, C.background(ds.images[parents == C.EMPTY]), index)
    return C.mask_boxes(C.changed(to_float(before), to_float(ds.images[index])))


def true_boxes(root: Path, seed: int, size: int) -> dict[str, list[int]]:
    """Exact boxes of a realistic dataset render's images: each scene rendered with its own view and no per-image
    light change or grain, from its empty floor up, compared step by step."""
    mapping = json.loads((root / "train.json").read_text())
    scenes = len(mapping) // 3
    lists = [mapping[f"CLEVR_train_{i:06d}_2.png"] for i in range(scenes)]
    placed = S.layout([(render.SCENE, i) for i in range(scenes)], lists, seed)
    out = {}
    for i, things in enumerate(placed):
        shots = R.Renderer(size, R.SAMPLES, render.scene_view(seed, (render.SCENE, i))).render(
            S.batch([things[:k] for k in range(4)])).images
        shots = to_float(torch.from_numpy(shots).permute(0, 3, 1, 2))
        box = C.mask_boxes(C.changed(shots[:3], shots[1:]))
        out.update({f"CLEVR_train_{i:06d}_{k}.png": box[k].tolist() for k in range(3)})
    return out


def distribution(values: torch.Tensor) -> dict:
    q = torch.quantile(values.double(), torch.tensor([0.05, 0.5], dtype=torch.double)).tolist()
    return {"pairs": len(values), "share_iou_ge_0.9": round(float((values >= THRESHOLD).double().mean()), 4),
            "share_iou_lt_0.5": round(float((values < 0.5).double().mean()), 4), "p5": round(q[0], 3),
            "median": round(q[1], 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="render DIR/clean and DIR/realistic here (each reused if present)")
    p.add_argument("--scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean", type=Path, help="an existing clean dataset render (instead of --out)")
    p.add_argument("--realistic", type=Path, help="an existing --realistic render of the same seed and scenes")
    args = p.parse_args(argv)
    if args.out is not None:
        args.clean, args.realistic = args.out / "clean", args.out / "realistic"
        for root, realistic in ((args.clean, False), (args.realistic, True)):
            if not (root / "meta.json").is_file():
                render.render_dataset(root, scenes=args.scenes, seed=args.seed, realistic=realistic)
    if args.clean is None or args.realistic is None:
        p.error("give --out DIR, or both --clean ROOT and --realistic ROOT")
    meta = {name: json.loads((root / "meta.json").read_text()) for name, root in
            (("clean", args.clean), ("realistic", args.realistic))}
    if meta["clean"].get("realistic") or not meta["realistic"].get("realistic") or \
            meta["clean"]["seed"] != meta["realistic"]["seed"] or meta["clean"]["size"] != meta["realistic"]["size"]:
        p.error("--clean must be a clean and --realistic a --realistic dataset render of the same seed and size")
    seed, size = meta["realistic"]["seed"], meta["realistic"]["size"]

    names, found = C.root_boxes(args.realistic, size)
    clean_names, clean = C.root_boxes(args.clean, size)
    if clean_names != names:
        p.error("the two roots hold different images; render both from the same --seed and --scenes")
    truth = true_boxes(args.realistic, seed, size)
    truth = torch.tensor([truth[names[i]] for i in found.index.tolist()])
    naive = naive_boxes(args.realistic, size)
    area = lambda b: ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).double() / size ** 2  # noqa: E731
    report = {"clean": str(args.clean), "realistic": str(args.realistic), "seed": seed, "size": size, "steps": {}}
    for k in found.step.unique().tolist():
        here = found.step == k
        report["steps"][f"k={k}"] = {
            "boxes vs clean render": distribution(C.iou(found.box[here], clean.box[here])),
            "boxes vs truth": distribution(C.iou(found.box[here], truth[here])),
            "naive vs clean render": distribution(C.iou(naive[here], clean.box[here])),
            "naive vs truth": distribution(C.iou(naive[here], truth[here])),
            "truth vs clean render": distribution(C.iou(truth[here], clean.box[here])),
            "median box area (clean, truth, boxes, naive)": [round(float(area(b[here]).median()), 3)
                                                             for b in (clean.box, truth, found.box, naive)],
            "larger than half the frame (boxes, naive)": [int((area(b[here]) > C.MAX_BOX_AREA).sum())
                                                          for b in (found.box, naive)],
        }
    report["all"] = {"boxes vs clean render": distribution(C.iou(found.box, clean.box)),
                     "boxes vs truth": distribution(C.iou(found.box, truth)),
                     "naive vs clean render": distribution(C.iou(naive, clean.box)),
                     "naive vs truth": distribution(C.iou(naive, truth)),
                     "truth vs clean render": distribution(C.iou(truth, clean.box))}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
