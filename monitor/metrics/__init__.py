"""Metric paths (one grammar for history, charts and rules) and the charts' history."""
