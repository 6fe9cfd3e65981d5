"""Tickstream's shared layer: event model, codecs, Redis layout, settings and the publisher.

Dependency rule: ``shared`` imports neither ``gateway`` nor ``ingestor``.
"""

__version__ = "0.1.0"
