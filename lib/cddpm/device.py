"""The one place a compute device and its autocast precision are chosen: CUDA when present unless asked otherwise,
bf16 only where the hardware computes it natively; one-line errors."""
from __future__ import annotations

import platform

import torch

from .choices import MIXED_PRECISIONS


def resolve(name: str | torch.device | None = None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``; ``None``: CUDA when present, else the CPU) as a usable device."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA GPU is visible on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: cddpm runs on cpu, cuda or mps, not {device.type}")
    return device


# oneDNN's _is_mkldnn_bf16_supported() honours ONEDNN_MAX_CPU_ISA but on x86 asks only for AVX512_CORE, which
# Skylake to Ice Lake emulate bf16 with; there the CPU must also have AVX512-BF16 (docs/any-cpu.md)
_X86 = ("x86_64", "amd64", "i386", "i686")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16/AMX on x86, the BF16 extension on Arm): only there is
    bf16 autocast faster than fp32; emulated, it is several times slower."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return platform.machine().lower() not in _X86 or torch.cpu._is_avx512_bf16_supported()


def choose_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """The autocast precision (``no``, ``fp16`` or ``bf16``) that ``requested`` (one of ``MIXED_PRECISIONS``) means
    on ``device``, and why. ``auto``: bf16 where the hardware computes it natively (a CPU with native bf16, a GPU
    of compute capability >= 8.0), fp16 on older GPUs, fp32 (``no``) otherwise."""
    if requested not in MIXED_PRECISIONS:
        raise ValueError(f"unknown mixed precision {requested!r}; use one of {', '.join(MIXED_PRECISIONS)}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError(f"fp16 mixed precision needs a CUDA GPU, not {device.type}; use --mixed-precision auto, no or "
                         "bf16 on this machine")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        where = f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
        # from Ampere (8.0) on; torch.cuda.is_bf16_supported() also says True on a T4 (7.5), which emulates it
        native, fallback, slower = major >= 8, "fp16", "slower than fp16"
    elif device.type == "cpu":
        where, native, fallback, slower = "this CPU", cpu_has_native_bf16(), "no", "several times slower than fp32"
    else:
        return (requested, "requested") if requested != "auto" else ("no", f"auto: fp32 on {device.type}")
    if requested == "auto":
        if native:
            return "bf16", f"auto: {where} computes bf16 natively"
        return fallback, (f"auto: {where} has no native bf16 (emulated, it is {slower}), so "
                          f"{'fp32' if fallback == 'no' else fallback}")
    if requested == "bf16" and not native:
        return "bf16", (f"requested; warning: {where} has no native bf16, so it is emulated and {slower}; "
                        f"use --mixed-precision auto or {fallback}")
    return requested, "requested"


def describe_precision(precision: str, reason: str) -> str:
    """The one line a trainer prints about its precision: what runs and why."""
    return f"precision: {'fp32' if precision == 'no' else precision + ' autocast'} ({reason})"
