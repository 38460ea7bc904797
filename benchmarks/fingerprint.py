"""Fingerprint of the method's numerics: a few seeded fp32 training steps of a preset (the default one unless
--preset; every setting named), then seeded samples.

Prints one sha1 per artefact. Two checkouts that print the same lines on one machine compute the same weights and the
same PNGs (floating point differs across CPU kinds, so compare on one machine only):

    python benchmarks/fingerprint.py --data data/synthetic-iclevr --work /tmp/fingerprint
"""
import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from cddpm.choices import DEFAULT_PRESET, PRESETS


def tensors_sha1(path: Path) -> str:
    """sha1 over the tensors of a safetensors file in key order (file metadata left out)."""
    h = hashlib.sha1()
    for key, value in sorted(load_file(path).items()):
        h.update(key.encode())
        h.update(value.contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic-iclevr")
    parser.add_argument("--work", required=True, help="scratch folder (replaced)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET)
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    cddpm = [sys.executable, "-m", "cddpm"]
    run = work / "run"
    subprocess.run(cddpm + ["train", "--data", args.data, "--out", str(run), "--max-steps", str(args.steps),
                            "--preset", args.preset, "--prediction-type", "v_prediction", "--batch-size", "8", "--lr", "1e-3",
                            "--warmup", "2", "--weight-decay", "0", "--max-grad-norm", "1", "--p-uncond", "0.1",
                            "--ema-decay", "0.9999", "--no-hflip", "--mixed-precision", "no", "--seed", "0",
                            "--save-every", str(args.steps), "--log-every", "1"], check=True)
    out = work / "samples"
    subprocess.run(cddpm + ["sample", "--run", str(run), "--labels", "red cube,blue sphere", "gray cylinder",
                            "--steps", "4", "--seed", "3", "--out", str(out)], check=True)
    step = sorted(run.glob("checkpoints/step-*"))[-1]
    for name in ("model.safetensors", "ema.safetensors"):
        print(f"{step.name}/{name} {tensors_sha1(step / name)}")
    for png in sorted(out.rglob("*.png")):
        print(f"{png.relative_to(out)} {hashlib.sha1(png.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
