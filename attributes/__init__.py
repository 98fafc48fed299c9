"""Attribute model: per-location edit directions, direction banks and masked edits."""
