/* Kring wallet, the refer page: the Share button hands the invitation link
 * to the phone's share sheet (Web Share API) where the browser has one, and
 * otherwise copies the link to the clipboard. The button stays hidden
 * without JavaScript; the link is on the page to copy by hand.
 * No inline scripts anywhere: a CSP without 'unsafe-inline' works.
 */
(function () {
  "use strict";

  var button = document.getElementById("share");
  if (!button) return;
  var status = document.getElementById("share-status");
  var url = button.getAttribute("data-share-url");
  var text = button.getAttribute("data-share-text");

  function say(message) {
    if (status) status.textContent = message;
  }

  function selectLink() {
    var field = document.getElementById("referral-link");
    if (field) {
      field.focus();
      field.select();
    }
  }

  function copy() {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(
        function () { say("Link copied. Paste it in a message to your friend."); },
        function () { selectLink(); say("Copy the link above and send it to your friend."); }
      );
    } else {
      selectLink();
      say("Copy the link above and send it to your friend.");
    }
  }

  button.hidden = false;
  button.addEventListener("click", function () {
    if (typeof navigator.share === "function") {
      navigator.share({ title: "Join me on Kring", text: text, url: url }).then(
        function () { say("Shared."); },
        function (error) {
          // AbortError: the member closed the share sheet; nothing to say.
          if (!error || error.name !== "AbortError") copy();
        }
      );
    } else {
      copy();
    }
  });
})();
