"""Rendering latent grids: the spatial generator (per-location styles, padding modes) and the tile sampler."""
