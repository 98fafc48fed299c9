"""Encoders that invert photos into spatial latent grids (optimization and learned encoders)."""
