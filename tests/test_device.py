"""Device and precision choice: one function each, one-line errors for devices this machine does not have; the
GPU cases run here by faking what torch reports about the GPU."""
import os
import platform
import subprocess
import sys

import pytest
import torch

from cddpm import device
from cddpm.device import resolve


def test_default_and_cpu():
    assert resolve() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve("cpu") == torch.device("cpu") and resolve(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name, message", [
    ("banana", "unknown device 'banana'; use cpu, cuda, cuda:N or mps"),
    ("cuda:99", "cuda:99"),
    ("meta", "cddpm runs on cpu, cuda or mps"),
])
def test_bad_devices_are_one_line_errors(name, message):
    with pytest.raises(ValueError, match=message) as err:
        resolve(name)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="no CUDA GPU is visible on this machine; use --device cpu"):
        resolve("cuda")


# --- precision -------------------------------------------------------------------------------------

def fake_gpu(monkeypatch, name: str, capability: tuple[int, int]) -> torch.device:
    """Make torch report one CUDA GPU of this name and compute capability (no GPU needed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 says too (emulated)
    return device.resolve("cuda")


@pytest.mark.parametrize("name, capability, chosen", [
    ("Tesla T4", (7, 5), "fp16"), ("Tesla V100-SXM2-16GB", (7, 0), "fp16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16"), ("NVIDIA L4", (8, 9), "bf16"), ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
])
def test_auto_on_a_gpu_takes_bf16_from_compute_capability_8(monkeypatch, name, capability, chosen):
    gpu = fake_gpu(monkeypatch, name, capability)
    precision, reason = device.choose_precision("auto", gpu)
    assert precision == chosen and name in reason and f"{capability[0]}.{capability[1]}" in reason
    assert device.choose_precision("no", gpu) == ("no", "requested")
    assert device.choose_precision("fp16", gpu) == ("fp16", "requested")
    precision, reason = device.choose_precision("bf16", gpu)  # what is asked for runs, with a warning where emulated
    assert precision == "bf16" and ("warning" in reason) == (chosen == "fp16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_cpu_takes_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    precision, reason = device.choose_precision("auto", cpu)
    assert precision == ("bf16" if native else "no") and reason.startswith("auto: this CPU")
    precision, reason = device.choose_precision("bf16", cpu)
    assert precision == "bf16" and ("several times slower" in reason) == (not native) and "\n" not in reason
    assert device.choose_precision("no", cpu) == ("no", "requested")
    with pytest.raises(ValueError, match="fp16 mixed precision needs a CUDA GPU") as err:
        device.choose_precision("fp16", cpu)
    assert "\n" not in str(err.value)


def test_other_devices_and_names():
    assert device.choose_precision("auto", torch.device("mps")) == ("no", "auto: fp32 on mps")
    with pytest.raises(ValueError, match="unknown mixed precision 'fp32'; use one of auto, no, fp16, bf16"):
        device.choose_precision("fp32", torch.device("cpu"))
    assert device.describe_precision("no", "why") == "precision: fp32 (why)"
    assert device.describe_precision("bf16", "why") == "precision: bf16 autocast (why)"


@pytest.mark.parametrize("onednn, machine, avx512_bf16, native", [
    (False, "x86_64", True, False),   # oneDNN capped below AVX512 (ONEDNN_MAX_CPU_ISA=AVX2) or an AVX2-only CPU
    (True, "x86_64", False, False),   # Skylake .. Ice Lake: oneDNN takes AVX512_CORE, but bf16 is emulated
    (True, "x86_64", True, True),     # Zen 4, Sapphire Rapids and later
    (True, "aarch64", False, True),   # Arm: oneDNN asks for the BF16 extension itself
])
def test_native_cpu_bf16_needs_onednn_and_on_x86_avx512_bf16(monkeypatch, onednn, machine, avx512_bf16, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)
    monkeypatch.setattr(device.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert device.cpu_has_native_bf16() is native


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's x86 ISA switch")
def test_an_avx2_only_cpu_as_emulated_gets_fp32():
    # the stand-in for an AVX2-only x86 CPU that the README's measurements use: oneDNN then reports no bf16
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = ("import torch; from cddpm import device; "
            "print(device.cpu_has_native_bf16(), device.choose_precision('auto', torch.device('cpu'))[0])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "no"]
