"""Charities, members' donations of points, partners' matching campaigns."""
