"""Notebook helpers: a live loss curve for training and a tick-the-objects sampling panel."""
from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Mapping, Sequence

import ipywidgets as W
from IPython.display import Image as ShowImage
from IPython.display import display
from PIL import Image, ImageDraw

from .. import labels as L
from .. import runs
from ..choices import IMAGE_SIZE
from ..data import read_picture
from ..device import resolve as resolve_device
from ..figures import grid, loss_figure
from ..render.scenes import RGB
from ..sample import SampleRequest, generate


class LiveLoss:
    """An ``on_log`` callback for ``train``: redraws the loss curve in place at every log record."""

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


Box = tuple[int, int, int, int]
PREVIEW_SCALE = 3  # preview pixels per image pixel
FLOOR = (128, 128, 128)


def layout(chosen: Sequence[str], places: Mapping[str, tuple[bool, tuple[int, int], tuple[int, int]]]
           ) -> list[Box | None] | None:
    """One image's ``boxes`` for ``generate`` from the panel's (placed?, rows, columns) per object; None if none."""
    boxes = [(ys[0], xs[0], ys[1], xs[1]) if on else None for on, ys, xs in (places[name] for name in chosen)]
    return boxes if any(boxes) else None


def _preview(chosen: Sequence[str], boxes: Sequence[Box | None] | None) -> bytes:
    """PNG of the frame, scaled up, with each placed object's box outlined in its colour and named."""
    frame = Image.new("RGB", (IMAGE_SIZE * PREVIEW_SCALE,) * 2, FLOOR)
    draw = ImageDraw.Draw(frame)
    for name, box in zip(chosen, boxes or ()):
        if box:
            y0, x0, y1, x1 = (v * PREVIEW_SCALE for v in box)
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=RGB[name.split()[0]], width=3)
            draw.text((x0 + 4, y0 + 3), name, fill="white")
    png = io.BytesIO()
    frame.save(png, format="PNG")
    return png.getvalue()


def sampler_panel(run: str | os.PathLike, request: SampleRequest = SampleRequest(), checkpoint: str = "last",
                  ema: bool = True, images: int = 8) -> W.VBox:
    """24 object check boxes, an optional box per ticked object (sliders on a preview), an optional picture to add
    them to, and a Sample button that draws ``images`` samples of the ticked set as ``request`` says; errors show in
    the status line."""
    device = resolve_device()
    model, config, _ = runs.load_model(run, checkpoint, ema, device)
    ticks = {name: W.Checkbox(description=name, indent=False, layout=W.Layout(width="auto", margin="0 12px 0 0"))
             for name in L.CLASSES}
    ticks["red sphere"].value = True
    span = dict(value=(IMAGE_SIZE // 4, 3 * IMAGE_SIZE // 4), min=0, max=IMAGE_SIZE, layout=W.Layout(width="300px"))
    places = {name: (W.Checkbox(description=f"place {name}", indent=False, layout=W.Layout(width="170px")),
                     W.IntRangeSlider(description="rows", **span), W.IntRangeSlider(description="columns", **span))
              for name in L.CLASSES}
    rows = {name: W.HBox(list(widgets)) for name, widgets in places.items()}
    placing = W.VBox()
    preview = W.Image(format="png")
    seed_box = W.IntText(value=request.seed, description="seed", layout=W.Layout(width="160px"))
    onto = W.Text(placeholder="empty floor, or a picture's path to add to", description="onto",
                  layout=W.Layout(width="420px")).add_class("cddpm-onto")
    # the cddpm-* classes are what tests/test_browser.py finds them by
    button = W.Button(description="Sample", button_style="primary").add_class("cddpm-sample")
    status = W.Label().add_class("cddpm-status")
    picture = W.Image(format="png", layout=W.Layout(width=f"{96 * images}px")).add_class("cddpm-picture")

    def state() -> tuple[list[str], list[Box | None] | None]:
        chosen = [name for name, tick in ticks.items() if tick.value]
        return chosen, layout(chosen, {name: tuple(w.value for w in ws) for name, ws in places.items()})

    def refresh(_=None) -> None:
        chosen, boxes = state()
        placing.children = [rows[name] for name in chosen]
        preview.value = _preview(chosen, boxes)
        try:
            status.value = f"{', '.join(L.check(chosen))}: press Sample"
        except ValueError as err:
            status.value = str(err)

    def on_click(_=None) -> None:
        chosen, boxes = state()
        try:
            L.check(chosen)
            drawn = dataclasses.replace(request, seed=seed_box.value)
            path = onto.value.strip()
            start = path and read_picture(path, model.config.sample_size)
            status.value = f"sampling {images} x {', '.join(chosen)} ..."
            samples = generate(model, config["scheduler"], [chosen] * images, drawn, boxes=boxes and [boxes] * images,
                               start=start.expand(images, -1, -1, -1) if path else None)
        except (ValueError, OSError) as err:  # OSError: a picture that cannot be read
            status.value = str(err)
            return
        png = io.BytesIO()
        Image.fromarray(grid(samples, nrow=images).permute(1, 2, 0).numpy()).save(png, format="PNG")
        picture.value = png.getvalue()
        status.value = (f"{', '.join(chosen)} (seed {drawn.seed}, {drawn.sampler} {drawn.steps or 'default'} steps, "
                        f"guidance {drawn.guidance}{', placed' if boxes else ''}"
                        f"{f', added to {path}' if path else ''})")

    for widget in [*ticks.values(), *(w for ws in places.values() for w in ws)]:
        widget.observe(refresh, "value")
    button.on_click(on_click)
    refresh()
    on_click()
    grid_rows = [W.HBox([ticks[f"{c} {s}"] for c in L.COLOURS], layout=W.Layout(flex_flow="row wrap")) for s in L.SHAPES]
    return W.VBox([*grid_rows, W.HBox([placing, preview]), W.HBox([seed_box, onto, button]), status, picture])
