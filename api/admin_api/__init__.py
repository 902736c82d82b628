"""The admin API (/admin/v1): programme configuration, role-protected and audited.

Authentication, roles and the audit log live in `api/admin_auth/`; the rules
in the domain packages. Each controller here is thin: decode, check the role,
call the domain in one transaction together with its audit row.
"""
