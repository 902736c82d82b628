// Draws the dashboard's charts with the vendored Chart.js (window.Chart).
// Each <canvas data-chart="ID"> reads its data from <script type="application/json" id="ID">
// (no inline script: the CSP allows scripts from 'self' only). Figures arrive
// as htmx fragments, so every swap is looked at; a canvas is drawn once.
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777",
                 "#0891b2", "#65a30d", "#4b5563", "#ea580c"];

  function axisOf(unit) {
    return unit === "percent" ? "y1" : "y";
  }

  function draw(canvas) {
    if (canvas.dataset.drawn || !window.Chart) return;
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var stacked = spec.kind === "stacked";
    var units = {};
    var datasets = spec.series.map(function (s, i) {
      var colour = PALETTE[i % PALETTE.length];
      units[axisOf(s.unit)] = true;
      return {
        label: s.label,
        data: s.unit === "cents"
          ? s.data.map(function (v) { return v === null ? null : v / 100; })
          : s.data,
        yAxisID: axisOf(s.unit),
        borderColor: colour,
        backgroundColor: spec.kind === "line" ? colour : colour + "cc",
        spanGaps: true,
      };
    });
    var scales = { x: { stacked: stacked } };
    if (units.y) scales.y = { stacked: stacked, beginAtZero: true, position: "left" };
    if (units.y1) {
      scales.y1 = {
        position: units.y ? "right" : "left",
        grid: { drawOnChartArea: !units.y },
        ticks: { callback: function (v) { return v + "%"; } },
      };
    }
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, {
      type: spec.kind === "line" ? "line" : "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        responsive: true,
        scales: scales,
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
