"""Renderer speed: images/s of ``cddpm render`` end to end (layout, ray casting, PNG files, json) per process count.

Run under ``flock /tmp/cddpm-heavy.lock`` on a shared machine so that timings stay honest:

    flock /tmp/cddpm-heavy.lock .venv/bin/python benchmarks/render.py --scenes 1000 --workers 1 2 [--realistic]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from cddpm import render


def measure(scenes: int, size: int, workers: int, realistic: bool = False) -> dict:
    """Seconds and images/s of rendering ``scenes`` x 3 images into a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        render.render_dataset(Path(tmp) / "root", scenes=scenes, size=size, workers=workers, realistic=realistic)
        seconds = time.perf_counter() - start
    return dict(scenes=scenes, images=3 * scenes, size=size, workers=workers, realistic=realistic,
                seconds=round(seconds, 2), images_per_s=round(3 * scenes / seconds, 1))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=1000, help="scenes per measurement (3 images each)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts to time")
    p.add_argument("--realistic", action="store_true", help="time cddpm render --realistic")
    args = p.parse_args(argv)
    machine = dict(cpu=platform.processor() or platform.machine(), cores=render.cpu_cores(),
                   load_1min_before=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    rows = [measure(args.scenes, args.size, w, args.realistic) for w in args.workers]
    print(json.dumps(dict(machine=machine, results=rows), indent=2))
    return rows


if __name__ == "__main__":
    main()
