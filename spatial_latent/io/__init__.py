"""Pictures and big outputs: reading and writing pictures, the tile store, Deep Zoom and its viewer."""
