"""Lottery pages: the wallet's lotteries, the public draw verification page and draw JSON, and the admin API for lotteries (issue 5)."""
