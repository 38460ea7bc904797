"""cddpm: a conditional denoising diffusion model for i-CLEVR scenes."""
__version__ = "0.2.0"
