// Formatting for the Conveyor dashboard: pure functions of a job (or a number) to text.
"use strict";

function fmtS(s) { return s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`; }
function fmtUsd(x) { return x >= 0.01 ? `$${x.toFixed(2)}` : `$${x.toPrecision(2)}`; }

// Work done, 0-100: a cancelled job's cancelled items were never run, so they do not count.
function doneFraction(job) {
  const c = job.counts;
  if (["cancelled", "cancelling"].includes(job.status) && c.total > 0) {
    return (100 * (c.succeeded + c.failed)) / c.total;
  }
  return job.progress;
}
function pct(job) {
  const done = doneFraction(job);
  return `${done.toFixed(done < 100 ? 1 : 0)}%`;
}

// The status pill: { text, kind }. A completed job with failures says so, in amber.
function statusPill(job) {
  const failed = job.counts.failed;
  if (job.status === "completed" && failed > 0) {
    return { text: `completed with ${failed.toLocaleString("en")} failed`, kind: "warn" };
  }
  return { text: job.status, kind: job.status };
}

// A latency percentile is its histogram bucket's upper bound, at most 10% above the truth
// (conveyor.jobs.latency): shown as "≤ 54 ms", rounded up to two significant digits.
function upTo(s) {
  const ms = s * 1000;
  const digits = Math.max(0, 1 - Math.floor(Math.log10(ms)));
  const scale = 10 ** digits;
  const up = Math.ceil(ms * scale - 1e-9) / scale;
  return up >= 1000 ? `≤ ${+(up / 1000).toPrecision(2)} s` : `≤ ${up} ms`;
}
function latencyText(s) {
  if (!s || !s.latency_p50_s) { return "-"; }
  const [a, b, c] = [s.latency_p50_s, s.latency_p95_s, s.latency_p99_s].map(upTo);
  if (a === b && b === c) { return `p50-p99 ${a}`; }
  if (a === b) { return `p50-p95 ${a} · p99 ${c}`; }
  return `p50 ${a} · p95 ${b} · p99 ${c}`;
}

// "2 m 05 s" for a duration in seconds.
function durationText(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) { return "-"; }
  if (seconds < 60) { return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`; }
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) { return `${m} m ${String(s).padStart(2, "0")} s`; }
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}
function jobDuration(job, nowS) {
  if (!job.started_at) { return null; }
  return (job.finished_at || nowS) - job.started_at;
}
function createdText(t) {
  if (!t) { return "-"; }
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString("en-GB", { hour12: false })
    : d.toLocaleString("en-GB", { hour12: false, dateStyle: "short", timeStyle: "short" });
}

// An LLM job's tokens and cost, from its summary (service/spend.py): { tokens, cost } as
// shown, or null for a job without them. Cost: the priced answers' sum ("+ N unpriced" when
// some models have no price), "no price" when no answer was priced.
function spendText(s) {
  if (!s || typeof s.tokens_in !== "number") { return null; }
  const tokens = `${s.tokens_in.toLocaleString("en")} in / ${s.tokens_out.toLocaleString("en")} out`;
  const unpriced = s.unpriced_answers || 0;
  let cost = "$0";
  if (s.cost_usd > 0) {
    cost = fmtUsd(s.cost_usd) + (unpriced ? ` + ${unpriced} unpriced` : "");
  } else if (unpriced > 0) {
    cost = "no price";
  }
  if (typeof s.projected_cost_usd === "number" && s.projected_cost_usd > 0) {
    cost += ` (projected ${fmtUsd(s.projected_cost_usd)})`;
  }
  return { tokens, cost };
}
