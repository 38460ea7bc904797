"""Device choice: one function, one-line errors for devices this machine does not have."""
import pytest
import torch

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
