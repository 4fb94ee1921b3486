"""rgrid: run scripts on rented compute, durably, on Temporal."""

__version__ = "0.1.0"
