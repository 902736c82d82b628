"""The partner settlement API, /partner/v1: JSON, token-authenticated."""
