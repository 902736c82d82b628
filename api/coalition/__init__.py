"""Who takes part: partners (with their terms and API credentials) and members
(with their cards). Plain Python and SQL, no web framework."""
