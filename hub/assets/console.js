// Tradecast hub console: live figures. An element with data-live="<url>" opens a server-sent
// event stream there and takes each `figures` event's HTML as its new content (the server
// renders and escapes it; the stream ends when the session does).
(function () {
  "use strict";
  if (!window.EventSource) return;
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var es = new EventSource(el.getAttribute("data-live"));
    es.addEventListener("figures", function (e) { el.innerHTML = e.data; });
    es.addEventListener("error", function () {
      // Closed by the server (signed out, demoted): stop instead of reconnecting forever.
      if (es.readyState === EventSource.CLOSED) el.setAttribute("data-live-ended", "1");
    });
  });
})();
