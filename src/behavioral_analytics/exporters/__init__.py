"""Metric exporters: send the worker's in-process counters elsewhere on their own schedule."""
