// posture dashboard charts (uPlot, served from /static). The data sits in the chart element's
// data-series attribute, put there by the server, so a page is one request.
function postureSeries(id) {
  const el = document.getElementById(id);
  return [el, JSON.parse(el.dataset.series)];
}

function postureTimeline(id) {
  const [el, s] = postureSeries(id);
  if (!s.t.length) { el.textContent = "No minutes recorded this day."; return; }
  const alerts = s.alerts;
  const markAlerts = (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#d62828";
    ctx.lineWidth = 2;
    for (const t of alerts) {
      const x = u.valToPos(t, "x", true);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  };
  const opts = {
    width: el.clientWidth - 16, height: 300,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "median flexion (°)", stroke: "#1d3557", width: 1.5 },
      { label: "90th percentile (°)", stroke: "#e07a5f", width: 1 },
    ],
    axes: [{}, { label: "flexion (°)" }],
    hooks: { draw: [markAlerts] },
  };
  // Clock times in the wearer's time zone when the page gives it (else the browser's).
  if (s.tz) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), s.tz);
  el.chart = new uPlot(opts, [s.t, s.p50, s.p90], el);
}

function postureTrend(id) {
  const [el, rows] = postureSeries(id);
  if (!rows.length) { el.textContent = "No worker-days in this period."; return; }
  const opts = {
    width: el.clientWidth - 16, height: 240,
    scales: { x: { time: true } },
    series: [{}, { label: "time above 20° (% of worn)", stroke: "#457b9d", width: 2, points: { show: true } }],
    axes: [{}, { label: "%" }],
  };
  el.chart = new uPlot(opts, [rows.map((r) => r.t), rows.map((r) => r.pct)], el);
}

function postureWeek(id) {
  // A week day by day: minutes bent forward beyond 20°, 45° and 60° as one bar a day (each
  // threshold's bar drawn over the lower one's: time beyond 60° is part of the time beyond 45°),
  // and last week's minutes beyond 20° on the same weekday as a dot.
  const [el, s] = postureSeries(id);
  const days = s.labels.map((_, i) => i);
  const bar = (stroke, fill) => ({ stroke, fill, width: 1, paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } });
  const opts = {
    width: el.clientWidth - 16, height: 260,
    scales: { x: { time: false, range: [-0.5, days.length - 0.5] }, y: { range: (u, lo, hi) => [0, Math.max(10, hi)] } },
    series: [
      { label: "day", value: (u, i) => (i == null ? "" : s.labels[i]) },
      { label: "> 20° (min)", ...bar("#457b9d", "#a8c5da") },
      { label: "> 45° (min)", ...bar("#e07a5f", "#f2b8a6") },
      { label: "> 60° (min)", ...bar("#d62828", "#d62828") },
      { label: "last week > 20° (min)", stroke: "#1d2330", paths: () => null, points: { show: true, size: 9, fill: "#fff" } },
    ],
    axes: [
      { splits: () => days, values: (u, splits) => splits.map((i) => s.labels[i] ?? "") },
      { label: "minutes" },
    ],
  };
  el.chart = new uPlot(opts, [days, s.above20, s.above45, s.above60, s.prev_above20], el);
}
