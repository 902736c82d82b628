/* The API reference (/schema): start Redoc on the OpenAPI document's URL.
 * A static file rather than Litestar's inline init script, so that the page's
 * content security policy allows no inline script (api/web/api_docs.py). */
(function () {
  "use strict";
  var container = document.getElementById("redoc-container");
  if (!container || !window.Redoc) return;
  window.Redoc.init(container.getAttribute("data-spec-url"), {}, container);
})();
