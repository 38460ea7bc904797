"""The 03_sample panel: its placement state, the panel driven from Python, and the panel used as a person would, in
JupyterLab in headless Chromium (skipped where Chromium or chromedriver is missing)."""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_root
from test_pipeline import canvas_model
from test_sample import make_run

from cddpm.figures import grid
from cddpm.workflow import profiles

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"CLEVR_train_000000_0.png": ["red sphere"], "CLEVR_train_000000_1.png": ["red sphere", "cyan cube"]}
PICTURE = tuple(grid(torch.zeros(8, 3, 64, 64), nrow=8).shape[1:])  # the panel's 8 samples in one row: (68, 530)
PLACES = {"red cube": (True, (8, 40), (4, 30)), "blue sphere": (False, (16, 48), (16, 48)),
          "cyan cube": (False, (16, 48), (16, 48))}


def test_layout_gives_boxes_of_placed_objects_only():
    from cddpm.workflow.widgets import layout

    assert layout(["red cube", "blue sphere"], PLACES) == [(8, 4, 40, 30), None]
    assert layout(["blue sphere", "red cube"], PLACES) == [None, (8, 4, 40, 30)]  # aligned with the objects
    assert layout(["blue sphere", "cyan cube"], PLACES) is None  # nothing placed: generate places every object


def smoke_outputs(root: Path) -> None:
    """What 03_sample reads on the smoke profile under ``root``: its data root and its run (an untrained micro layout
    model, the smoke profile's design)."""
    smoke = profiles.get("smoke")
    make_run(root / smoke.run, make_root(root / smoke.data_root, MAPPING), model=canvas_model(layout=True))


def find(widget, name: str):
    """The widget of ``widget``'s tree with the CSS class ``cddpm-NAME``."""
    if f"cddpm-{name}" in getattr(widget, "_dom_classes", ()):
        return widget
    found = (find(child, name) for child in getattr(widget, "children", ()))
    return next((w for w in found if w is not None), None)


@pytest.fixture
def panel(tmp_path, monkeypatch):
    """The 03_sample panel on a micro smoke run, driven from Python; the test's folder is the working one."""
    from cddpm.workflow.widgets import sampler_panel

    smoke_outputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    return sampler_panel(profiles.get("smoke").run)


def test_panel_samples_the_ticked_set_and_reports_errors(panel):
    from PIL import Image

    status, picture = find(panel, "status"), find(panel, "picture")
    ticks = {w.description: w for row in panel.children[:3] for w in row.children}  # the 3 rows of 8 objects
    ticks["blue cube"].value = True
    find(panel, "sample").click()
    assert status.value.startswith("blue cube, red sphere (seed 0")
    assert Image.open(io.BytesIO(picture.value)).size == PICTURE[::-1]
    shown = picture.value
    ticks["cyan cube"].value = ticks["red cube"].value = True
    assert "exceed the limit of 3" in status.value  # at once, before Sample
    find(panel, "sample").click()
    assert "exceed the limit of 3" in status.value and picture.value == shown


def described(widget, text: str):
    """The widget of ``widget``'s tree whose description is ``text``."""
    if getattr(widget, "description", None) == text:
        return widget
    found = (described(child, text) for child in getattr(widget, "children", ()))
    return next((w for w in found if w is not None), None)


def test_panel_places_an_object_in_its_box_and_says_a_bad_box(panel):
    status, picture = find(panel, "status"), find(panel, "picture")
    unplaced = picture.value
    described(panel, "place red sphere").value = True
    described(panel, "rows").value, described(panel, "columns").value = (0, 4), (8, 40)  # 4 pixels high
    find(panel, "sample").click()
    assert "red sphere" in status.value and "too small" in status.value and picture.value == unplaced
    described(panel, "rows").value = (8, 40)
    find(panel, "sample").click()
    assert status.value.endswith(", placed)") and picture.value != unplaced


def test_panel_adds_the_ticked_objects_to_a_picture(panel, tmp_path):
    from PIL import Image

    Image.new("RGBA", (320, 240), (30, 160, 60, 255)).save(tmp_path / "green.png")  # the course's size and mode
    status, picture, onto = find(panel, "status"), find(panel, "picture"), find(panel, "onto")
    on_floor = picture.value
    onto.value = str(tmp_path / "missing.png")
    find(panel, "sample").click()
    assert "missing.png" in status.value and picture.value == on_floor  # said in the status line, nothing drawn
    onto.value = str(tmp_path / "green.png")
    find(panel, "sample").click()
    assert status.value.endswith(f"added to {tmp_path / 'green.png'})")
    shown = np.asarray(Image.open(io.BytesIO(picture.value)).convert("RGB"))[2:-2, 2:66]  # the first image
    assert (np.abs(shown.astype(int) - (30, 160, 60)).max(-1) <= 2).mean() > 0.5  # mostly the picture, kept


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path) -> Iterator[str]:
    """JupyterLab serving ``root`` on a free local port with a random token (in its environment, not its command
    line), on the smoke profile with this checkout's lib; yields the URL of 03_sample; stopped with its kernels."""
    token, port, home = secrets.token_hex(16), free_port(), root.parent / "jupyter"
    env = {**os.environ, "CDDPM_PROFILE": "smoke", "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    quiet = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    quiet.parent.mkdir(parents=True)
    quiet.write_text('{"doNotDisturbMode": true, "fetchNews": "false", "checkForUpdates": false}')  # no toast over the panel
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
               f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    with open(root.parent / "jupyterlab.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            assert server.poll() is None, (root.parent / "jupyterlab.log").read_text()
            time.sleep(0.1)
        yield f"{url}/lab/tree/notebooks/03_sample.ipynb?token={token}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 1400):
    """A headless Chromium driven by the system chromedriver; quit however the test ends."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def lab(tmp_path) -> Iterator[str]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium/chromedriver not installed: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "03_sample.ipynb", root / "notebooks")
    smoke_outputs(root)
    with jupyterlab(root) as url:
        yield url


def run_notebook(driver, url: str, timeout: float = 120):
    """Open the notebook, run all its cells from the Run menu and wait until the panel shows its first sample; a
    cell's error fails with its text. Returns a waiter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.2)
    driver.get(url)
    wait.until(lambda d: any(e.text.endswith("| Idle") for e in d.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-TextItem")))
    menu = wait.until(lambda d: d.find_element(By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel')][.='Run']"))
    menu.click()
    wait.until(lambda d: d.find_element(By.XPATH, "//div[contains(@class, 'lm-Menu-itemLabel')][.='Run All Cells']")).click()

    def first_sample(d):
        errors = d.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.error']")
        assert not errors, errors[0].text
        return "(seed" in "".join(e.text for e in d.find_elements(By.CSS_SELECTOR, ".cddpm-status"))

    wait.until(first_sample)
    return wait


def test_panel_in_jupyterlab(lab):
    from selenium.webdriver.common.by import By

    def press(element) -> None:  # as a person would: scrolled to the middle of the window, then clicked
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def tick(name: str) -> None:
        press(driver.find_element(By.XPATH, f"//label[span[.='{name}']]/input"))

    with chromium() as driver:
        wait = run_notebook(driver, lab)
        status = driver.find_element(By.CSS_SELECTOR, ".cddpm-status")
        picture = driver.find_element(By.CSS_SELECTOR, ".cddpm-picture")
        first = picture.get_attribute("src")
        tick("blue cube")
        press(driver.find_element(By.CSS_SELECTOR, ".cddpm-sample"))
        wait.until(lambda d: status.text.startswith("blue cube, red sphere (seed") and picture.get_attribute("src") != first)
        size = wait.until(lambda d: d.execute_script(
            "const img = arguments[0]; return img.complete && img.naturalWidth && [img.naturalHeight, img.naturalWidth]",
            picture))
        assert tuple(size) == PICTURE
        shown = picture.get_attribute("src")
        tick("cyan cube")
        tick("red cube")
        press(driver.find_element(By.CSS_SELECTOR, ".cddpm-sample"))
        wait.until(lambda d: "exceed the limit of 3" in status.text)
        assert picture.get_attribute("src") == shown
