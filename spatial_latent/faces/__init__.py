"""Faces: landmark alignment (the FFHQ procedure and model templates) and aligned photo sets."""
