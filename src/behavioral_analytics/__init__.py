"""behavioral-analytics: real-time behavioral analytics with exact counts."""

__version__ = "0.1.0"
