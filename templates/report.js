// forensics report: turns each static SVG chart into an interactive uPlot chart (zoom, pan, hover).
// The page is complete without this script; it only enhances. It reads chart data from the
// <script type="application/json" class="chart-data"> island inside each <figure class="chart">,
// never touches the network, and builds DOM with textContent only.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }
  var COLORS = {actual: "#1570ef", intended: "#475467", nan: "rgba(180,35,24,0.16)",
    deviation: "rgba(220,104,3,0.18)", finding: "rgba(21,92,211,0.08)", segment: "#7a5af8",
    checkpoint: "#079455", spike: "#dc6803"};
  var HEIGHT = 220;
  var GRID = {stroke: "#eaecf0", width: 1};

  function fmtStep(v) { return v == null ? "-" : Math.round(v).toLocaleString("en-US"); }
  function fmtValue(v) {
    if (v == null) { return ""; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(2) : String(+v.toPrecision(4));
  }

  // Bands (NaN runs, off-schedule stretches, the finding's steps) under the lines; markers over them.
  function overlays(spec) {
    function x(u, step) { return u.valToPos(step, "x", true); }
    return {hooks: {
      drawClear: [function (u) {
        var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
        ctx.save();
        spec.bands.forEach(function (band) {
          var x0 = x(u, band.from), x1 = x(u, band.to);
          ctx.fillStyle = COLORS[band.kind] || "rgba(0,0,0,0.08)";
          ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        });
        ctx.restore();
      }],
      draw: [function (u) {
        var ctx = u.ctx, top = u.bbox.top, bottom = top + u.bbox.height, px = devicePixelRatio || 1;
        ctx.save();
        spec.markers.forEach(function (marker) {
          var mx = x(u, marker.step);
          if (mx < u.bbox.left || mx > u.bbox.left + u.bbox.width) { return; }
          ctx.strokeStyle = ctx.fillStyle = COLORS[marker.kind] || "#667085";
          ctx.lineWidth = px;
          if (marker.kind === "spike") {
            ctx.beginPath(); ctx.moveTo(mx, top + 9 * px); ctx.lineTo(mx - 5 * px, top); ctx.lineTo(mx + 5 * px, top);
            ctx.closePath(); ctx.fill();
          } else {
            ctx.setLineDash(marker.kind === "checkpoint" ? [2 * px, 3 * px] : [6 * px, 3 * px]);
            ctx.beginPath(); ctx.moveTo(mx, top); ctx.lineTo(mx, bottom); ctx.stroke();
          }
        });
        ctx.restore();
      }]
    }};
  }

  // Mouse wheel zooms around the cursor; Shift+drag pans. uPlot's own drag-to-zoom and
  // double-click reset stay as they are.
  function wheelAndPan(spec) {
    return {hooks: {ready: [function (u) {
      var over = u.over, xs = u.data[0], full = [xs[0], xs[xs.length - 1]];
      function clamp(lo, hi) {
        var span = hi - lo, fullSpan = full[1] - full[0];
        if (span >= fullSpan) { return [full[0], full[1]]; }
        if (lo < full[0]) { hi += full[0] - lo; lo = full[0]; }
        if (hi > full[1]) { lo -= hi - full[1]; hi = full[1]; }
        return [lo, hi];
      }
      over.addEventListener("wheel", function (e) {
        e.preventDefault();
        var rect = over.getBoundingClientRect(), at = u.posToVal(e.clientX - rect.left, "x");
        var lo = u.scales.x.min, hi = u.scales.x.max, factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
        var r = clamp(at - (at - lo) * factor, at + (hi - at) * factor);
        u.setScale("x", {min: r[0], max: r[1]});
      }, {passive: false});
      over.addEventListener("mousedown", function (e) {
        if (!e.shiftKey || e.button !== 0) { return; }
        e.preventDefault(); e.stopPropagation();
        var startX = e.clientX, lo = u.scales.x.min, hi = u.scales.x.max, perPx = (hi - lo) / u.bbox.width * (devicePixelRatio || 1);
        function move(ev) {
          var r = clamp(lo - (ev.clientX - startX) * perPx, hi - (ev.clientX - startX) * perPx);
          u.setScale("x", {min: r[0], max: r[1]});
        }
        function up() { document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up); }
        document.addEventListener("mousemove", move);
        document.addEventListener("mouseup", up);
      }, true);
    }]}};
  }

  function logRange(u, min, max) {
    if (min == null || max == null) { return [1e-6, 1]; }
    var lo = Math.log10(min), hi = Math.log10(max);
    if (hi - lo < 1) { var mid = (hi + lo) / 2; lo = mid - 0.5; hi = mid + 0.5; }
    return [Math.pow(10, lo - 0.05 * (hi - lo)), Math.pow(10, hi + 0.05 * (hi - lo))];
  }

  // Decades only, at most six labels: uPlot's own log splits crowd a 40-decade diverging loss.
  // uPlot's default log increments stop at 1e16; a diverging loss reaches 1e38 and more.
  var LOG_INCRS = [];
  for (var e = -60; e <= 60; e++) { LOG_INCRS.push(Math.pow(10, e)); }

  function logSplits(u, axisIdx, min, max) {
    var lo = Math.ceil(Math.log10(min)), hi = Math.floor(Math.log10(max)), splits = [];
    if (hi <= lo) { return [min, Math.sqrt(min * max), max]; }
    var stride = Math.max(1, Math.ceil((hi - lo + 1) / 6));
    for (var d = lo; d <= hi; d += stride) { splits.push(Math.pow(10, d)); }
    return splits;
  }

  function build(figure) {
    var island = figure.querySelector("script.chart-data");
    if (!island) { return; }
    var spec = JSON.parse(island.textContent);
    var tables = spec.series.map(function (s) {
      var ys = spec.log ? s.y.map(function (v) { return v != null && v > 0 ? v : null; }) : s.y;
      return [s.x, ys];
    });
    var data = tables.length > 1 ? uPlot.join(tables) : tables[0];
    var series = [{label: "step", value: function (u, v) { return fmtStep(v); }}];
    spec.series.forEach(function (s) {
      var intended = s.kind === "intended";
      series.push({label: s.label, stroke: COLORS[s.kind] || "#101828", width: intended ? 1.5 : 1.25,
        dash: intended ? [6, 4] : undefined, spanGaps: intended, points: {show: false},
        value: function (u, v) { return v == null ? "-" : fmtValue(v); }});
    });
    var host = document.createElement("div");
    host.className = "uplot-host";
    figure.insertBefore(host, figure.querySelector("svg.static-chart"));
    var opts = {
      width: Math.max(320, host.clientWidth || figure.clientWidth - 24), height: HEIGHT,
      series: series,
      scales: {x: {time: false}, y: spec.log ? {distr: 3, log: 10, range: logRange} : {auto: true}},
      axes: [{values: function (u, splits) { return splits.map(fmtStep); }, size: 32, grid: GRID, ticks: GRID},
        {values: function (u, splits) { return splits.map(fmtValue); }, size: 72, grid: GRID, ticks: GRID,
          splits: spec.log ? logSplits : undefined,
          filter: spec.log ? function (u, splits) { return splits; } : undefined,
          incrs: spec.log ? LOG_INCRS : undefined}],
      padding: [10, 28, 0, 0],
      cursor: {drag: {x: true, y: false}},
      legend: {live: true},
      plugins: [overlays(spec), wheelAndPan(spec)]
    };
    var chart = new uPlot(opts, data, host);
    figure.classList.add("enhanced");
    figure.__chart = chart;
    window.addEventListener("resize", function () {
      chart.setSize({width: Math.max(320, host.clientWidth), height: HEIGHT});
    });
  }

  var figures = document.querySelectorAll("figure.chart");
  for (var i = 0; i < figures.length; i++) {
    try { build(figures[i]); } catch (error) { console.error("forensics: chart " + figures[i].id + ": " + error); }
  }
}());
