"""cddpm: a conditional denoising diffusion model for i-CLEVR scenes."""
__version__ = "0.1.0"
