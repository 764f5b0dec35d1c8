// The setup page's copy buttons: `<button data-copy="ID">` copies the value of the input #ID.
// Served as a file (the CSP allows no inline script).
(function () {
  "use strict";
  function copy(input, button) {
    var done = function () {
      var was = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = was; button.classList.remove("copied"); }, 1500);
    };
    var fallback = function () {
      input.focus();
      input.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* selected: the trader copies by hand */ }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, fallback);
    } else {
      fallback();
    }
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-copy]");
    if (!b) return;
    var input = document.getElementById(b.getAttribute("data-copy"));
    if (input) copy(input, b);
  });
})();
