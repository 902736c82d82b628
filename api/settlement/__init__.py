"""Settlement: periods, statements and payouts. Plain Python and SQL, no web framework."""
