"""``CddpmPipeline``, a trained model as a diffusers pipeline drawing ``cddpm sample``'s images, and ``export``,
which writes one from a run folder (docs/training-and-sampling.md#the-diffusers-pipeline)."""
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from . import labels as L
from . import runs, sample
from .choices import DEFAULT_SAMPLER, EDIT_THRESHOLD, IMAGE_SIZE, SAMPLE_BATCH
from .data import read_picture, to_uint8
from .model import ConditionalUNet
from .paths import atomic_write, claim_folder

MANIFEST = ".cddpm-export"
OUTPUT_TYPES = ("pil", "np", "pt")
Picture = Image.Image | str | os.PathLike | torch.Tensor  # what ``image=`` takes, see CddpmPipeline.__call__
KEYWORDS = {**{key: key for key in sample.FLAGS}, "guidance": "guidance_scale"}


class CddpmPipeline(DiffusionPipeline):
    """Draws i-CLEVR scenes of requested objects with a ``ConditionalUNet`` and any diffusers scheduler."""

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: ConditionalUNet, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, labels: str | Sequence[str | Sequence[str]], num_inference_steps: int = 20,
                 guidance_scale: float = 1.0, generator: torch.Generator | list[torch.Generator] | None = None,
                 seed: int | None = None, output_type: str = "pil", return_dict: bool = True,
                 batch_size: int = SAMPLE_BATCH, edit_threshold: float = EDIT_THRESHOLD,
                 boxes: Sequence[Sequence[sample.Box | None] | None] | None = None,
                 image: Picture | Sequence[Picture] | None = None) -> ImagePipelineOutput | tuple:
        """One image per item of ``labels`` (object names, or a comma-separated string), drawn as ``cddpm sample``
        draws them from ``seed``, ``generator`` (one, or one per image) or torch's global random state; ``boxes`` and
        ``image`` (a PIL image, a file or a (3, H, W) tensor in [0, 1]; one, or one per image) as docs/placement.md."""
        labels = [labels] if isinstance(labels, str) else labels
        conditions = [L.parse(c) if isinstance(c, str) else L.check(c) for c in labels]
        if not conditions:
            raise ValueError("no labels; give one object list per image, e.g. ['red sphere', 'cyan cube,gray cube']")
        start = None if image is None else self._pictures(image, len(conditions))
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; use one of {', '.join(OUTPUT_TYPES)}")
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        sample.set_steps(self.scheduler, num_inference_steps, "num_inference_steps")
        if seed is None:  # with a generator the request's seed goes unused
            seed = 0 if generator is not None else int(torch.randint(2 ** 62, ()))
        request = sample.SampleRequest(guidance=guidance_scale, seed=seed, batch_size=batch_size,
                                       edit_threshold=edit_threshold, names=KEYWORDS)  # steps: set_steps above
        gens = generator if generator is None or isinstance(generator, list) else [generator] * len(conditions)
        if gens is not None and len(gens) != len(conditions):
            raise ValueError(f"{len(gens)} generators for {len(conditions)} images; give one per image, or one")
        with self.progress_bar(total=sample.passes(self.unet, conditions) * len(self.scheduler.timesteps)) as bar:
            images = sample.generate(self.unet, self.scheduler, conditions, request, gens=gens, on_step=bar.update,
                                     boxes=boxes, start=start)
        if output_type == "pil":
            images = [Image.fromarray(a) for a in to_uint8(images).permute(0, 2, 3, 1).numpy()]
        elif output_type == "np":
            images = ((images + 1) / 2).permute(0, 2, 3, 1).numpy()
        else:
            images = (images + 1) / 2
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _pictures(self, image: Picture | Sequence[Picture], n: int) -> torch.Tensor:
        """``image`` (one picture, or one per image) as ``start`` (n, 3, S, S), read as training reads a file."""
        many = isinstance(image, Sequence) and not isinstance(image, str)
        pictures = list(image) if many else [image] * n
        if len(pictures) != n:
            raise ValueError(f"{len(pictures)} pictures for {n} images; give one per image, or one")
        read = []
        for picture in pictures:
            if isinstance(picture, torch.Tensor):
                if picture.dim() != 3 or picture.shape[0] != 3:
                    raise ValueError(f"a picture tensor must be (3, H, W) in [0, 1], got {tuple(picture.shape)}")
                picture = Image.fromarray(to_uint8(picture.float().cpu() * 2 - 1).permute(1, 2, 0).numpy())
            read.append(read_picture(picture, self.unet.config.sample_size))
        return torch.stack(read)


def export(run: str | os.PathLike, out: str | os.PathLike, checkpoint: str = "last", ema: bool = True,
           force: bool = False) -> Path:
    """Write a run's checkpoint as a ``CddpmPipeline`` folder ``out`` with a model card, atomically; an existing
    ``out`` must be empty, or an earlier export replaced with ``force``."""
    out = claim_folder(out, "--out", "cddpm export", _foreign, force)
    unet, config, folder = runs.load_model(run, checkpoint, ema)
    pipe = CddpmPipeline(unet=unet, scheduler=sample.make_sampler(DEFAULT_SAMPLER, config["scheduler"]))

    def write(tmp: Path) -> None:
        pipe.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(run, config, folder, ema))
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps(written + [MANIFEST], indent=1) + "\n")

    return atomic_write(out, write)


def _foreign(out: Path) -> list[str]:
    """What in ``out`` an export did not write: all but the files its manifest lists and their folders."""
    try:
        ours = set(json.loads((out / MANIFEST).read_text()))
    except (OSError, ValueError):
        ours = set()
    folders = {parent.as_posix() for name in ours for parent in Path(name).parents} - {"."}
    present = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*"))]
    return [name for name in present if name not in (folders if (out / name).is_dir() else ours)]


def model_card(run: str | os.PathLike, config: dict, folder: Path, ema: bool) -> str:
    """The export's README.md: where the model came from and how it was trained."""
    state = runs.read_state(folder)
    model, dataset = config["model"], config.get("dataset", {})
    images = f" ({dataset['images']} training images)" if "images" in dataset else ""
    seconds = state.get("train_seconds")
    canvas = ", canvas: one object per pass onto the empty floor" if model.get("canvas") else ""
    canvas += ", each in a box drawn from the training layouts of its class" if model.get("layout") else ""
    rows = [("data", f"`{config['data']}`{images}"),
            ("preset", config["train"].get("preset") or "none"),
            ("conditioning", f"{model['conditioning']}{canvas}"),
            ("resolution", f"{model['sample_size']}x{model['sample_size']}, images returned at "
                           f"{IMAGE_SIZE}x{IMAGE_SIZE}"),
            ("steps trained", str(state["step"])),
            ("train seconds", f"{seconds:.0f}" if seconds is not None else "not recorded"),
            ("weights", f"{'EMA' if ema else 'raw'}, checkpoint {folder.name} of `{run}`"),
            ("sampler", "DPM-Solver++ (`cddpm sample`'s default); swap with `XScheduler.from_config`")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
library_name: diffusers
tags: [cddpm, i-clevr, conditional-diffusion]
---
# cddpm: {Path(run).name}

A conditional diffusion model that draws i-CLEVR scenes of one to three requested objects
(`cddpm.model.ConditionalUNet`), written by `cddpm export`.

| | |
|---|---|
{table}

```python
from cddpm.pipeline import CddpmPipeline

pipe = CddpmPipeline.from_pretrained("path/to/this/folder")  # needs the cddpm package
images = pipe(["red sphere", "cyan cube,gray cylinder"], num_inference_steps=20, guidance_scale=1.0, seed=0).images
```

The same seed, steps and guidance give the images of `cddpm sample --labels ... --seed S --steps K --guidance W`.
"""
