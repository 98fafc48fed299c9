"""Faces: landmark alignment (the FFHQ procedure and model templates) and aligned photo sets.

``ASTRONAUT``: a public-domain photo (NASA's portrait of Eileen Collins, as in scikit-image)
shipped with the package, so that face tools have a real face to show offline.
"""

from pathlib import Path

ASTRONAUT = Path(__file__).parent / "astronaut.jpg"
