// posture dashboard charts (uPlot, served from /static). The data sits in the chart element's
// data-series attribute, put there by the server, so a page is one request.
function postureSeries(id) {
  const el = document.getElementById(id);
  return [el, JSON.parse(el.dataset.series)];
}

// Task segments under the timeline, by load class (style.css .load-* shows the same colours).
const LOAD_FILL = {
  low: "rgba(42, 157, 143, 0.16)", medium: "rgba(233, 170, 60, 0.22)", high: "rgba(214, 40, 40, 0.16)",
};
const LOAD_FILL_UNKNOWN = "rgba(120, 120, 120, 0.12)";

function shadeSegments(segments) {
  // A uPlot drawClear hook: each segment as a band behind the series, its task name at the top.
  return (u) => {
    const ctx = u.ctx, { left, top, width, height } = u.bbox;
    const px = devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
    ctx.font = `${11 * px}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (const g of segments) {
      const x0 = u.valToPos(g.start_s, "x", true), x1 = u.valToPos(g.end_s, "x", true);
      ctx.fillStyle = LOAD_FILL[g.load] || LOAD_FILL_UNKNOWN;
      ctx.fillRect(x0, top, x1 - x0, height);
      ctx.strokeStyle = "rgba(29, 35, 48, 0.35)"; ctx.lineWidth = px;
      ctx.beginPath(); ctx.moveTo(x0, top); ctx.lineTo(x0, top + height); ctx.stroke();
      const x = Math.max(x0, left) + 4 * px;
      if (Math.min(x1, left + width) - x > ctx.measureText(g.label).width) {
        ctx.fillStyle = "#1d2330";
        ctx.fillText(g.label, x, top + 3 * px);
      }
    }
    ctx.restore();
  };
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
    hooks: { draw: [markAlerts], drawClear: s.segments && s.segments.length ? [shadeSegments(s.segments)] : [] },
  };
  // Clock times in the wearer's time zone when the page gives it (else the browser's).
  if (s.tz) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), s.tz);
  el.chart = new uPlot(opts, [s.t, s.p50, s.p90], el);
}

function postureTrend(id) {
  const [el, rows] = postureSeries(id);
  if (!rows.length) { el.textContent = "No worker-days in this period."; return; }
  const day = 86400;  // one day of data alone: show the week around it, not years
  const opts = {
    width: el.clientWidth - 16, height: 240,
    scales: { x: { time: true, range: (u, lo, hi) => (hi - lo < day ? [lo - 3 * day, hi + 3 * day] : [lo, hi]) } },
    series: [{}, { label: "time above 20° (% of worn)", stroke: "#457b9d", width: 2, points: { show: true } }],
    axes: [{}, { label: "%" }],
  };
  el.chart = new uPlot(opts, [rows.map((r) => r.t), rows.map((r) => r.pct)], el);
}

function postureWeeks(id) {
  // The team week by week: flexion p50 and p90 (°, lines, left axis) and the share of assessed
  // worker-days that complied with the rotation policy (%, bars, right axis).
  const [el, s] = postureSeries(id);
  if (!s.labels.length) { el.textContent = "No weeks to show."; return; }
  const weeks = s.labels.map((_, i) => i);
  const opts = {
    width: el.clientWidth - 16, height: 260,
    scales: { x: { time: false, range: [-0.5, weeks.length - 0.5] }, deg: { range: (u, lo, hi) => [0, Math.max(20, hi)] }, pct: { range: [0, 100] } },
    series: [
      { label: "week", value: (u, i) => (i == null ? "" : s.labels[i]) },
      { label: "compliant days (%)", scale: "pct", stroke: "#2a9d8f", fill: "rgba(42, 157, 143, 0.25)", width: 1, paths: uPlot.paths.bars({ size: [0.5, 50] }), points: { show: false } },
      { label: "p50 flexion (°)", scale: "deg", stroke: "#1d3557", width: 2, points: { show: true } },
      { label: "p90 flexion (°)", scale: "deg", stroke: "#e07a5f", width: 2, points: { show: true } },
    ],
    axes: [
      { splits: () => weeks, values: (u, splits) => splits.map((i) => s.labels[i] ?? "") },
      { scale: "deg", label: "flexion (°)" },
      { scale: "pct", side: 1, label: "compliant (%)", grid: { show: false } },
    ],
  };
  el.chart = new uPlot(opts, [weeks, s.compliant_pct, s.p50, s.p90], el);
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
