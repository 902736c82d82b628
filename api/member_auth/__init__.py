"""Members signing in: one-time e-mail codes, wallet sessions, member API tokens."""
