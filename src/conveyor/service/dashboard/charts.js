// Rate charts for the Conveyor dashboard: a series of points drawn on a canvas with a time
// axis, a rate axis and the limit lines. The points come from the service (items settled per
// second, by when they ended; calls admitted by a limiter), never from when the page heard
// of them. Pure drawing: no fetch, no state of the page.
"use strict";

// "12:04:05" for a Unix time in seconds, in the browser's time zone.
function clockText(t) {
  return new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

// A "nice" step for an axis covering `span` with about `count` ticks: 1, 2 or 5 x 10^k.
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return step || power * 10;
}

// A job's series { start_s, bucket_s, per_s: [...] } as steps [{ t0, t1, v }].
function jobSteps(series) {
  const b = series.bucket_s || 1;
  return (series.per_s || []).map((v, i) => ({ t0: series.start_s + i * b, t1: series.start_s + (i + 1) * b, v }));
}

// Draw `steps` = [{ t0, t1, v }] (a rate held from t0 to t1, Unix seconds) and `limits` =
// [{ per_second }] on `canvas` (sized to its box, sharp on high-density screens). Returns the
// geometry used, for tests: { top, points: [{ x, y, t, v }], limitYs: [...] }.
function drawRates(canvas, steps, limits, options = {}) {
  const ratio = window.devicePixelRatio || 1;
  const cssW = Math.max(200, Math.floor(canvas.clientWidth || 600));
  const cssH = Math.max(120, Math.floor(canvas.clientHeight || 220));
  canvas.width = cssW * ratio;
  canvas.height = cssH * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const left = 44, right = 10, topPad = 10, bottom = 24;
  const plotW = cssW - left - right, plotH = cssH - topPad - bottom;
  const values = steps.map((s) => s.v);
  const t0 = steps.length ? steps[0].t0 : 0;
  const t1 = steps.length ? Math.max(t0 + 1, steps[steps.length - 1].t1) : 1;
  const limitTop = Math.max(0, ...limits.map((l) => l.per_second));
  const top = Math.max(1, limitTop * 1.15, ...values.map((v) => v * 1.1));
  const x = (t) => left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v) => topPad + plotH - (v / top) * plotH;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  // The rate axis: gridlines and labels.
  const yStep = niceStep(top, 4);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = 0; v <= top; v += yStep) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(cssW - right, y(v)); ctx.stroke();
    ctx.fillText(`${+v.toFixed(2)}/s`, left - 4, y(v));
  }
  // The time axis: clock times, a tick every nice number of seconds.
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  if (values.length) {
    // Whole seconds at least (the series has no finer grain), labels clear of the edges.
    const tStep = Math.max(1, niceStep(t1 - t0, Math.max(2, Math.floor(plotW / 90))));
    for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
      ctx.beginPath(); ctx.moveTo(x(t), topPad + plotH); ctx.lineTo(x(t), topPad + plotH + 4); ctx.stroke();
      const at = Math.min(Math.max(x(t), left + 24), cssW - right - 24);
      ctx.fillText(clockText(t), at, topPad + plotH + 6);
    }
  } else {
    ctx.fillText(options.empty || "No items settled yet.", left + plotW / 2, topPad + plotH / 2);
  }
  const limitYs = [];
  for (const limit of limits) {
    ctx.strokeStyle = "#dc2626";
    ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(left, y(limit.per_second)); ctx.lineTo(cssW - right, y(limit.per_second)); ctx.stroke();
    ctx.setLineDash([]);
    limitYs.push(y(limit.per_second));
  }
  // One step per bucket: the rate held over the seconds it covers (no invented slopes).
  const points = steps.map((s) => ({ t: s.t0, t1: s.t1, v: s.v, x: x(s.t0), y: y(s.v) }));
  if (points.length) {
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const xEnd = x(p.t1);
      if (i === 0) { ctx.moveTo(p.x, p.y); } else { ctx.lineTo(p.x, p.y); }
      ctx.lineTo(xEnd, p.y);
    });
    ctx.stroke();
    ctx.lineWidth = 1;
  }
  return { top, points, limitYs };
}
