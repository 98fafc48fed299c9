"""The names of the generator's noise modes, importable without torch.

The networks check them (:func:`spatial_latent.networks.check_noise_mode`, which re-exports the
list as ``networks.NOISE_MODES``) and every command offers them as its ``--noise-mode`` choices;
keeping the one list here lets ``--help`` answer without loading torch.
"""

from __future__ import annotations

# Per-pixel noise of a render: the network's stored maps ("const"), fresh seeded noise
# ("random"), or none at all.
NOISE_MODES: tuple[str, ...] = ("const", "random", "none")
