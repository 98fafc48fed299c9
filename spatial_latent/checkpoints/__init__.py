"""Checkpoints: every format a user brings (safely), the native format, downloads and the built-in weights.

``loading.load_generator`` is the front door; ``readers`` dispatches by format; ``safe_pickle``
is the one security boundary for pickles; ``hub`` downloads well-known networks; ``weights/``
holds the embedded models and their cards.
"""
