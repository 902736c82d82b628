// The statement's Print button (no inline script: the wallet's CSP has none).
document.addEventListener("click", (event) => {
  if (event.target instanceof Element && event.target.closest("[data-print]")) {
    window.print();
  }
});
