/* Kring wallet: registers the service worker (offline card, installable app)
 * and retires the card's live QR code once it has expired, so a page left
 * open without a connection never shows a code the till would refuse.
 * No inline scripts anywhere: a CSP without 'unsafe-inline' works.
 */
(function () {
  "use strict";

  if ("serviceWorker" in navigator && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {
        // No worker (private mode, old browser): the wallet still works online.
      });
    });
  }

  var EXPIRED_TEXT =
    "The live code has expired. It renews when you are online; until then the till can scan the card below.";

  function retireExpiredCodes() {
    var figures = document.querySelectorAll("[data-expires-at]");
    for (var i = 0; i < figures.length; i++) {
      var expires = Date.parse(figures[i].getAttribute("data-expires-at"));
      if (!isNaN(expires) && Date.now() >= expires) {
        var note = document.createElement("p");
        note.className = "muted";
        note.textContent = EXPIRED_TEXT;
        figures[i].replaceWith(note);
      }
    }
  }

  if (document.getElementById("live")) {
    window.setInterval(retireExpiredCodes, 1000);
  }
})();
