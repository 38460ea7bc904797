"""cddpm: a conditional denoising diffusion model for i-CLEVR scenes.

The method is flat and reads in order: ``labels``, ``data``, ``canvas``, ``model``, ``diffusion``, ``train``,
``sample``, ``pipeline``. Beside it, support the method itself uses: ``choices`` (names and defaults), ``device``,
``budget``, ``runs``, ``paths``, ``progress``, ``provenance`` (the hashes a run and its samples record),
``figures`` (the grids and the loss curve ``train`` and ``sample`` write) and ``folders`` (the outputs layout, which
names the default run folder); ``cli`` sits on top. Behind it, ``evaluation/`` judges and ``workflow/`` orchestrates;
no method or support module imports either, and ``evaluation`` does not import ``workflow``.
"""
__version__ = "0.2.0"
