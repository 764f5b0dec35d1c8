// Tradecast node UI: live refresh (server-sent events), countdowns, the equity chart.
(function () {
  "use strict";
  var loaded = Date.now();
  function fmt(ms) {
    if (ms <= 0) return "expired";
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }
  function tick() {
    document.querySelectorAll("[data-remaining-ms]").forEach(function (el) {
      var base = parseInt(el.getAttribute("data-remaining-ms"), 10);
      var since = parseInt(el.getAttribute("data-since") || loaded, 10);
      el.textContent = fmt(base - (Date.now() - since));
    });
  }
  document.body.addEventListener("htmx:afterSwap", function () {
    var now = String(Date.now());
    document.querySelectorAll("[data-remaining-ms]").forEach(function (el) { el.setAttribute("data-since", now); });
    chart();
  });
  setInterval(tick, 1000);
  tick();
  if (window.EventSource) {
    var es = new EventSource("/ui/events");
    es.addEventListener("refresh", function () { if (window.htmx) htmx.trigger(document.body, "tc-refresh"); });
  }
  var plot = null;
  function chart() {
    var el = document.getElementById("equity-chart");
    if (!el || !window.uPlot || el.getAttribute("data-drawn")) return;
    el.setAttribute("data-drawn", "1");
    fetch("/ui/equity.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
      if (!d.t.length) { el.textContent = "No equity points yet."; return; }
      // Money around its own range (a flat line stays mid-chart, not on a 0-based axis); the
      // drawdown from 0 to a little above its worst.
      var money = function (u, min, max) {
        var pad = Math.max((max - min) * 0.1, Math.abs(max) * 0.002, 1);
        return [min - pad, max + pad];
      };
      var pct = function (u, min, max) { return [0, Math.max(1, max * 1.2)]; };
      var opts = {
        width: el.clientWidth || 800, height: 240,
        scales: { y: { range: money }, "%": { range: pct } },
        series: [{}, { label: "Equity", stroke: "#4aa3ff", width: 2 }, { label: "Balance", stroke: "#8b98a8", width: 1 },
                 { label: "Drawdown %", stroke: "#ef5b5b", width: 1, scale: "%" }],
        axes: [{ stroke: "#8b98a8", grid: { stroke: "#243040" } }, { stroke: "#8b98a8", size: 70, grid: { stroke: "#243040" } },
               { side: 1, scale: "%", stroke: "#ef5b5b", grid: { show: false } }]
      };
      plot = new uPlot(opts, [d.t, d.equity, d.balance, d.drawdown], el);
    });
  }
  chart();
})();
