"""Latents: grids of per-location latents, windows, infinite latent fields, composition and cell masks."""
