/* Kring wallet service worker, served at /sw.js (scope "/").
 *
 * - The app shell (CSS, htmx, icons, manifest, offline page) is precached when
 *   a version installs and served cache-first.
 * - Pages are network-first. The card page's last good copy is kept, so the
 *   card (number, barcode and QR) shows at a till with no signal; any other
 *   page offline gets the offline page.
 * - htmx fragments (HX-Request: true) are never cached: the server answers the
 *   same URL with a fragment or a whole page (Vary: HX-Request), and a cached
 *   fragment must never be shown as a page.
 * - Updates: VERSION is a hash of this file and of everything precached, filled
 *   in by the server. A new version installs, takes over at once (skipWaiting,
 *   clients.claim) and deletes every cache of older versions.
 */
"use strict";

const VERSION = "__KRING_SW_VERSION__";
const PRECACHE = __KRING_PRECACHE__;
const OFFLINE_PAGES = __KRING_OFFLINE_PAGES__;
const OFFLINE_URL = "/offline";
const PREFIX = "kring-wallet-";
const SHELL_CACHE = PREFIX + "shell-" + VERSION;
const PAGES_CACHE = PREFIX + "pages-" + VERSION;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      // "reload": the network's copy, never an older one from the HTTP cache.
      .then((cache) => cache.addAll(PRECACHE.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith(PREFIX) && name !== SHELL_CACHE && name !== PAGES_CACHE)
            .map((name) => caches.delete(name))
        )
      )
      .then(() => self.clients.claim())
  );
});

function isFragment(request) {
  return request.headers.get("HX-Request") === "true";
}

function signedOut(url) {
  return url.pathname === "/sign-in" || url.pathname.startsWith("/sign-in/") || url.pathname === "/sign-out";
}

async function cacheFirst(request) {
  const cached = await caches.match(request, { cacheName: SHELL_CACHE });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") {
    const cache = await caches.open(SHELL_CACHE);
    await cache.put(request, response.clone());
  }
  return response;
}

async function networkFirstPage(request, url) {
  const keep = OFFLINE_PAGES.includes(url.pathname);
  try {
    const response = await fetch(request);
    const landed = new URL(response.url || request.url);
    if (signedOut(landed)) {
      // Signed out (or the session ended): the member's pages must not outlive it.
      await caches.delete(PAGES_CACHE);
    } else if (keep && response.ok && !response.redirected && response.type === "basic") {
      const cache = await caches.open(PAGES_CACHE);
      await cache.put(url.pathname, response.clone());
    }
    return response;
  } catch (error) {
    if (keep) {
      const cached = await caches.match(url.pathname, { cacheName: PAGES_CACHE });
      if (cached) return cached;
    }
    const offline = await caches.match(OFFLINE_URL, { cacheName: SHELL_CACHE });
    return offline || Response.error();
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // forms go to the network, as without a worker
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (isFragment(request)) return; // never cached: see above
  if (PRECACHE.includes(url.pathname) && url.pathname !== OFFLINE_URL) {
    // Only the shell: other static files (the portal's) stay with the network,
    // or they would go stale until the wallet's shell next changes.
    event.respondWith(cacheFirst(request));
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(networkFirstPage(request, url));
  }
});
