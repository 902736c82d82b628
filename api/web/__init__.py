"""Pieces every HTTP surface shares: problem responses and app-state dependencies."""
