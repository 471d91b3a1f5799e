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
