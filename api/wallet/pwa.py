"""What makes the wallet an installable, offline-capable app: the web app
manifest, the service worker (served from the site root, so its scope is the
whole site) and the offline page.

The service worker's cache version is a hash of everything it precaches and
of its own code: a deploy that changes any of them changes the version, the
browser sees a new worker, installs it and deletes the old caches.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

PWA_DIR = Path(__file__).resolve().parents[2] / "pwa"
STATIC_DIR = PWA_DIR / "static"
SERVICE_WORKER = PWA_DIR / "sw.js"
MANIFEST = PWA_DIR / "manifest.webmanifest"
OFFLINE_PATH = "/offline"
MANIFEST_PATH = "/manifest.webmanifest"
# The app shell: what every wallet page needs, fetched when the worker installs.
SHELL_STATIC = (
    "css/wallet.css",
    "vendor/htmx-2.0.11.min.js",
    "js/wallet.js",
    "icons/icon-192.png",
    "icons/icon-512.png",
    "icons/icon-maskable-512.png",
)
# Pages kept for offline use: the last copy fetched while online is shown when
# the network is gone. The card is what a member needs at a till with no signal.
OFFLINE_PAGES = ("/card",)
_VERSION_PLACEHOLDER = '"__KRING_SW_VERSION__"'
_PRECACHE_PLACEHOLDER = "__KRING_PRECACHE__"
_OFFLINE_PAGES_PLACEHOLDER = "__KRING_OFFLINE_PAGES__"


def shell_urls() -> list[str]:
    return [f"/static/{name}" for name in SHELL_STATIC] + [MANIFEST_PATH, OFFLINE_PATH]


def _version(offline_page: bytes) -> str:
    digest = hashlib.sha256(SERVICE_WORKER.read_bytes())
    digest.update(MANIFEST.read_bytes())
    digest.update(offline_page)
    for name in SHELL_STATIC:
        digest.update(name.encode() + b"\0" + (STATIC_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


@cache
def service_worker_js(offline_page: bytes) -> str:
    """sw.js with its version and lists filled in (files do not change while
    the process runs, so this is computed once)."""
    source = SERVICE_WORKER.read_text()
    for placeholder in (_VERSION_PLACEHOLDER, _PRECACHE_PLACEHOLDER, _OFFLINE_PAGES_PLACEHOLDER):
        if placeholder not in source:
            raise RuntimeError(f"pwa/sw.js lost its {placeholder} placeholder")
    return (
        source.replace(_VERSION_PLACEHOLDER, json.dumps(_version(offline_page)))
        .replace(_PRECACHE_PLACEHOLDER, json.dumps(shell_urls()))
        .replace(_OFFLINE_PAGES_PLACEHOLDER, json.dumps(list(OFFLINE_PAGES)))
    )


@cache
def manifest_bytes() -> bytes:
    return MANIFEST.read_bytes()
