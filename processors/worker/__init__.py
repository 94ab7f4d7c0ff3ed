"""The stream worker: see the reading guide in ``processors``."""
