"""On-demand, signed image derivatives for user-generated media, served by nginx."""

__version__ = "0.1.0"
