"""The partner portal: htmx pages for partner staff (sign in, till, transactions).

Pages call the same service functions as the partner API (`api.partner_api.services`);
this package only adds staff accounts, the session cookie and form parsing.
"""
