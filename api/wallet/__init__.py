"""The member wallet: htmx pages at the site root, the PWA's manifest and service worker."""
