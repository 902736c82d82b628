"""The back-office: htmx pages at /backoffice for programme admins (session cookie)."""
