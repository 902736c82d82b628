"""A point-of-sale simulator that drives realistic partner traffic (`kring-pos`)."""

from partners.pos_simulator.traffic import Simulator, Summary, basket_cents

__all__ = ["Simulator", "Summary", "basket_cents"]
