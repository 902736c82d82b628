/* Kring till: "Scan card" reads the member's card QR code with the device camera
 * (nimiq qr-scanner, vendored) and looks the member up exactly as typing the
 * number does: it fills the card field and submits the lookup form.
 *
 * No inline script and no inline style in the markup, so a CSP without
 * 'unsafe-inline' works; qr-scanner decodes in a worker made from a blob: URL
 * when the browser has no native BarcodeDetector (that CSP needs worker-src blob:).
 */
(function () {
  "use strict";

  // What a card's QR code may carry, tried in order; each returns the value for
  // the card field, or null. The server resolves a token to the member's card
  // (api/coalition/card_tokens.py), so both fill the same field.
  var CARD_CODE_READERS = [
    function signedCardToken(text) {
      // The wallet's live QR: "K1." and 40 base32 characters, valid two minutes.
      var token = text.toUpperCase();
      return /^K1\.[A-Z2-7]{40}$/.test(token) ? token : null;
    },
    function plainCardNumber(text) {
      var digits = text.replace(/[\s-]/g, "");
      return /^\d{16}$/.test(digits) ? digits : null;
    },
  ];

  function readCardCode(text) {
    for (var i = 0; i < CARD_CODE_READERS.length; i++) {
      var value = CARD_CODE_READERS[i](String(text).trim());
      if (value !== null) return value;
    }
    return null;
  }
  window.KringTillScan = { readCardCode: readCardCode };

  function start() {
    var button = document.getElementById("scan-card");
    var panel = document.getElementById("scanner");
    var video = document.getElementById("scanner-video");
    var status = document.getElementById("scan-status");
    var cancel = document.getElementById("scan-cancel");
    var help = document.getElementById("scan-help");
    var field = document.getElementById("card");
    var frame = document.getElementById("scanner-frame");
    if (!frame || !button || !panel || !video || !status || !cancel || !help || !field) return;
    var form = field.form;
    var scanner = null; // made on first use, then started and paused
    var scanning = false;

    function explain(text) {
      button.hidden = true;
      help.textContent = text;
      help.hidden = false;
    }

    if (!window.QrScanner) return explain("Card scanning did not load: type the card number.");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return explain("Card scanning needs a secure (https) connection: type the card number.");
    }

    function close(focusTo) {
      if (scanning) {
        scanning = false;
        scanner.pause(true); // true: release the camera now, not after qr-scanner's grace delay
      }
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
      (focusTo || button).focus();
    }

    function found(result) {
      if (!scanning) return; // a frame decoded just as staff stopped the scanner
      var card = readCardCode(result.data);
      if (card === null) {
        status.textContent = "That QR code is not a Kring card. Try the member's card.";
        return; // keep scanning
      }
      if (navigator.vibrate) navigator.vibrate(60);
      close(field);
      field.value = card;
      // The same lookup as typing: htmx takes the submit event (hx-get), or the browser does.
      if (form.requestSubmit) form.requestSubmit();
      else form.submit();
    }

    function open() {
      panel.hidden = false;
      button.setAttribute("aria-expanded", "true");
      status.textContent = "Point the camera at the QR code on the card.";
      cancel.focus();
      if (!scanner) {
        scanner = new window.QrScanner(video, found, {
          returnDetailedScanResult: true,
          preferredCamera: "environment",
          highlightScanRegion: true,
          // Given an overlay, qr-scanner only positions it (CSSOM, allowed by the
          // CSP); its own overlay is SVG markup with a style attribute, refused.
          overlay: frame,
          maxScansPerSecond: 10,
          onDecodeError: function () {}, // every frame without a code; not worth saying
        });
      }
      scanning = true;
      scanner.start().catch(function () {
        close(field);
        explain("The camera could not be opened (permission refused, or in use): type the card number.");
      });
    }

    button.addEventListener("click", function () {
      if (scanning) close();
      else open();
    });
    cancel.addEventListener("click", function () { close(); });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") close();
    });

    window.QrScanner.hasCamera().then(function (has) {
      if (has) button.hidden = false;
      else explain("No camera found on this device: type the card number.");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
