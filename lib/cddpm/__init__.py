"""cddpm: a conditional denoising diffusion model for i-CLEVR scenes.

The method reads in order: ``labels``, ``data``, ``canvas``, ``model``, ``diffusion``, ``train``, ``sample``,
``pipeline``; ``evaluation/`` judges and ``workflow/`` orchestrates; no method module imports either.
"""
__version__ = "0.2.0"
