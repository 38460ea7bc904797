"""Repository-wide pytest hooks: the notebooks run in order (01 -> 04) on one xdist worker."""
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid.startswith("notebooks/"):
            item.add_marker(pytest.mark.xdist_group("notebooks"))
