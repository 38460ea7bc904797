"""Notebook helpers: a live loss curve for training and a tick-the-objects sampling panel."""
from __future__ import annotations

import dataclasses
import io
import os

import ipywidgets as W
from IPython.display import Image as ShowImage
from IPython.display import display
from PIL import Image

from .. import labels as L
from .. import runs
from ..device import resolve as resolve_device
from ..figures import grid, loss_figure
from ..sample import SampleRequest, generate


class LiveLoss:
    """An ``on_log`` callback for ``train``: redraws the loss curve (:func:`cddpm.figures.loss_figure`) in place at
    every log record."""

    def __init__(self):
        self.records: list[dict] = []
        self.handle = display(ShowImage(data=self._png(), format="png"), display_id=True)

    def __call__(self, record: dict) -> None:
        """Add one log record and redraw."""
        self.records.append(record)
        if self.handle is not None:  # None outside IPython
            self.handle.update(ShowImage(data=self._png(), format="png"))

    def _png(self) -> bytes:
        step = self.records[-1]["step"] if self.records else 0
        png = io.BytesIO()
        loss_figure(self.records, title=f"training loss, step {step}").savefig(png, format="png", dpi=90)
        return png.getvalue()


def sampler_panel(run: str | os.PathLike, request: SampleRequest = SampleRequest(), checkpoint: str = "last",
                  images: int = 8) -> W.VBox:
    """A grid of 24 object check boxes and a Sample button that draws ``images`` samples of the ticked set as
    ``request`` says (its seed is the panel's first)."""
    device = resolve_device()
    model, config, _ = runs.load_model(run, checkpoint, device=device)
    boxes = {name: W.Checkbox(description=name, indent=False, layout=W.Layout(width="140px")) for name in L.CLASSES}
    boxes["red sphere"].value = True
    seed_box = W.IntText(value=request.seed, description="seed", layout=W.Layout(width="160px"))
    button = W.Button(description="Sample", button_style="primary")
    status = W.Label()
    picture = W.Image(format="png", layout=W.Layout(width=f"{96 * images}px"))

    def on_click(_=None) -> None:
        chosen = [name for name, box in boxes.items() if box.value]
        try:
            L.check(chosen)
            drawn = dataclasses.replace(request, seed=seed_box.value)
        except ValueError as err:
            status.value = str(err)
            return
        status.value = f"sampling {images} x {', '.join(chosen)} ..."
        samples = generate(model, config["scheduler"], [chosen] * images, drawn)
        png = io.BytesIO()
        Image.fromarray(grid(samples, nrow=images).permute(1, 2, 0).numpy()).save(png, format="PNG")
        picture.value = png.getvalue()
        status.value = (f"{', '.join(chosen)} (seed {drawn.seed}, {drawn.sampler} {drawn.steps or 'default'} steps, "
                        f"guidance {drawn.guidance})")

    button.on_click(on_click)
    rows = [W.HBox([boxes[f"{c} {s}"] for c in L.COLOURS]) for s in L.SHAPES]
    on_click()
    return W.VBox([*rows, W.HBox([seed_box, button]), status, picture])
