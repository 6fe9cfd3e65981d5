"""The ``tickstream`` command: the composition root that may import every component."""
