"""The names and defaults that the library, the ``cddpm`` command line and the notebooks share, in one place;
torch-free, so that ``cddpm --help`` stays instant."""
from __future__ import annotations

SPLITS = ("test", "new_test")                       # the condition files besides train.json
SAMPLERS = ("ddpm", "ddim", "dpmsolver")            # diffusers schedulers, see cddpm.sample.SAMPLERS
DEFAULT_SAMPLER = "dpmsolver"                       # DPM-Solver++ (the sampler check in docs/ablations.md)
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, DEFAULT_SAMPLER: 20}
WEIGHTS = ("ema", "raw")                            # a checkpoint's EMA of the weights, or the weights themselves
GUIDANCE = 1.0                                      # classifier-free guidance scale (1: plain conditional)
SAMPLE_BATCH = 64                                   # images a sampler draws at once (the pipeline too)
CONDITIONINGS = ("concat", "embed")                 # how the label reaches the UNet, see cddpm.model
PREDICTION_TYPES = ("epsilon", "v_prediction")
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")   # both trainers' autocast, see cddpm.device.choose_precision
DEFAULT_PRECISION = "auto"                          # bf16 where native, fp16 on older GPUs, else fp32
PRESETS = ("canvas64", "layout64", "crop64", "zoom64", "colab", "reference")  # cddpm.model.PRESETS
DEFAULT_PRESET = "zoom64"                           # the measured best at equal time (docs/ablations.md)
PROFILES = ("smoke", "demo", "cpu", "colab", "reference")       # cddpm.workflow.profiles.PROFILES
DEFAULT_DATA = "data/synthetic-iclevr"
DEFAULT_EVALUATOR = "outputs/evaluator/checkpoint.pth"
DEFAULT_NOTEBOOKS = "notebooks"
DEFAULT_OUTPUTS = "outputs"   # where the profiles, the demo and the batches write (cddpm.folders)
HELD_OUT = 0.05  # of the scenes of a root we did not render: kept out of a profile's training, for the judge check
DENOISE_LABELS = ("red sphere", "cyan cylinder", "cyan cube")  # the objects of the denoising strip
DENOISE_FRAMES = 8                                  # its states, noise to image
SEED = 0            # where render, probes and sample start when no --seed is given
IMAGE_SIZE = 64     # the course's image side: renders, boxes (256 for figures)
PER_CONDITION = 10  # ground-truth renders of each condition
SCENES = 6003       # scenes of a synthetic set, 3 images each: 18009 images, the size of the course's train.json
PROBE_SET = 32      # object lists per probe file, like test.json
EDIT_THRESHOLD = 0.1  # canvas sampling: a pass keeps changes whose 5x5 mean |change| exceeds this ([-1, 1] units)
