"""JSON API /member/v1: what the wallet shows, for native apps (bearer tokens)."""
