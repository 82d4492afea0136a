"""Conformance of the client libraries people already use (issue #13)."""
