"""Programme admins: accounts (password and a mandatory second factor), roles, the audit log."""
