// The Conveyor dashboard: plain JavaScript, no build step. It talks to the same API as any
// client: /v1/service, /v1/jobs, /v1/files, and follows Server-Sent Events (/v1/events for
// the list, /v1/jobs/{id}/events for a job). Events are read with fetch (not EventSource)
// so that the API key can travel in the Authorization header, never in a URL. Every path is
// resolved against the page, so the dashboard works where the service is mounted (/jobs/).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { key: sessionStorage.getItem("conveyor-key") || "", stream: null, tasks: [] };

// "/v1/jobs" -> "v1/jobs": relative to the page ({mount}/), not to the host's root.
const here = (path) => path.replace(/^\//, "");

function headers(extra = {}) {
  return state.key ? { ...extra, Authorization: `Bearer ${state.key}` } : extra;
}

function notice(text) {
  const el = $("#notice");
  el.textContent = text || "";
  el.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(here(path), { ...options, headers: headers(options.headers) });
  if (response.status === 401) {
    $("#key-form").hidden = false;
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
    throw new Error(detail);
  }
  return body;
}

// Follow a Server-Sent Events stream; reconnect with Last-Event-ID until a "done" event.
function follow(path, onEvent) {
  const controller = new AbortController();
  let lastId = null;
  let finished = false;
  async function run() {
    while (!finished && !controller.signal.aborted) {
      try {
        const extra = lastId === null ? {} : { "Last-Event-ID": lastId };
        const response = await fetch(here(path), { headers: headers(extra), signal: controller.signal });
        if (!response.ok) { throw new Error(`HTTP ${response.status}`); }
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) { break; }
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = { name: "message", data: "", id: null };
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) { event.name = line.slice(7); }
              else if (line.startsWith("data: ")) { event.data += line.slice(6); }
              else if (line.startsWith("id: ")) { event.id = line.slice(4); }
            }
            if (!event.data) { continue; }
            if (event.id !== null) { lastId = event.id; }
            onEvent(event.name, JSON.parse(event.data));
            if (event.name === "done") { finished = true; }
          }
        }
      } catch (error) {
        if (controller.signal.aborted) { return; }
      }
      if (!finished) { await new Promise((r) => setTimeout(r, 1000)); }
    }
  }
  run();
  return { close: () => controller.abort() };
}

function render(templateId) {
  if (state.stream) { state.stream.close(); state.stream = null; }
  const view = $("#view");
  view.replaceChildren($(`#${templateId}`).content.cloneNode(true));
  return view;
}

function pct(job) { return `${job.progress.toFixed(job.progress < 100 ? 1 : 0)}%`; }
function fmtS(s) { return s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`; }
function fmtUsd(x) { return x >= 0.01 ? `$${x.toFixed(2)}` : `$${x.toPrecision(2)}`; }

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

// ---- the jobs list ----------------------------------------------------------------------

async function showList() {
  const view = render("list-view");
  try {
    const info = await api("/v1/service");
    state.tasks = info.tasks;
    $("#task", view).replaceChildren(...info.tasks.map((t) => new Option(t.name, t.name)));
  } catch (error) { notice(error.message); return; }
  $("#submit-form", view).addEventListener("submit", submitJob);
  state.stream = follow("/v1/events?limit=50", (name, body) => {
    if (name === "jobs") { showJobs(body.data); }
  });
}

function showJobs(jobs) {
  const body = $("#jobs tbody");
  if (!body) { return; }
  $("#no-jobs").hidden = jobs.length > 0;
  body.replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    row.innerHTML = `<td><a href="#/jobs/${job.id}"><code>${job.id.slice(0, 13)}</code></a></td>
      <td></td><td><span class="status ${job.status}">${job.status}</span></td>
      <td><div class="bar"><div style="width:${job.progress}%"></div><span>${pct(job)}</span></div></td>
      <td>${job.counts.succeeded}</td><td>${job.counts.failed}</td><td>${job.counts.total}</td>
      <td class="spend"></td>`;
    row.children[1].textContent = job.task;
    const spend = spendText(job.summary);
    if (spend) {
      row.children[7].textContent = spend.cost;
      row.children[7].title = `tokens: ${spend.tokens}`;
    }
    return row;
  }));
}

async function submitJob(event) {
  event.preventDefault();
  const status = $("#submit-status");
  const file = $("#file").files[0];
  if (!file) { status.textContent = "Choose a JSONL file first."; return; }
  $("#submit").disabled = true;
  try {
    status.textContent = "Uploading...";
    const uploaded = await api("/v1/files", {
      method: "POST", body: file, headers: { "Content-Type": "application/jsonl" },
    });
    const job = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        task: $("#task").value,
        file_id: uploaded.id,
        options: {
          concurrency: Number($("#concurrency").value) || 10,
          attempts: Number($("#attempts").value) || 1,
        },
      }),
    });
    status.textContent = `Submitted ${job.counts.total} items.`;
    location.hash = `#/jobs/${job.id}`;
  } catch (error) {
    status.textContent = error.message;
  } finally {
    $("#submit").disabled = false;
  }
}

// ---- one job ----------------------------------------------------------------------------

function showJob(jobId) {
  const view = render("job-view");
  const chart = { points: [], last: null, limits: [] };
  let failedSeen = -1;
  $("#cancel", view).addEventListener("click", async () => {
    try { update(await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" })); }
    catch (error) { notice(error.message); }
  });
  $("#retry", view).addEventListener("click", async () => {
    try {
      const answer = await api(`/v1/jobs/${jobId}/retry`, { method: "POST" });
      update(answer.job);
      if (!state.stream) { state.stream = follow(`/v1/jobs/${jobId}/events`, onEvent); }
    } catch (error) { notice(error.message); }
  });

  function onEvent(name, job) {
    update(job);
    if (name === "done") { state.stream = null; }
  }

  function update(job) {
    if (!$("#job-id")) { return; }
    $("#job-id").textContent = job.id;
    const badge = $("#job-status");
    badge.textContent = job.status;
    badge.className = `status ${job.status}`;
    $("#job-task").textContent = job.task;
    $("#job-step").textContent = job.step || "";
    $("#job-bar").style.width = `${job.progress}%`;
    $("#job-progress").textContent = pct(job);
    for (const k of ["succeeded", "failed", "cancelled", "running", "pending", "total"]) {
      $(`#n-${k}`).textContent = job.counts[k];
    }
    const s = job.summary;
    $("#throughput").textContent = `${s.throughput_per_s.toFixed(1)} /s`;
    $("#latency").textContent = s.latency_p50_s
      ? `${fmtS(s.latency_p50_s)} / ${fmtS(s.latency_p95_s)} / ${fmtS(s.latency_p99_s)}` : "-";
    const spend = spendText(s);
    $("#spend-tokens").hidden = $("#spend-cost").hidden = !spend;
    $("#tokens").textContent = spend ? spend.tokens : "-";
    $("#cost").textContent = spend ? spend.cost : "-";
    $("#job-error").hidden = !job.error;
    $("#job-error").textContent = job.error || "";
    const active = ["queued", "running"].includes(job.status);
    $("#cancel").disabled = !active;
    // A failed job with cancelled items could not run (conveyor.jobs.settle): nothing to retry.
    const couldNotRun = job.status === "failed" && job.counts.cancelled > 0;
    $("#retry").disabled = job.counts.failed === 0 || couldNotRun || ["cancelled", "cancelling"].includes(job.status);
    chart.limits = job.limits.filter((l) => l.unit === "requests");
    sample(job);
    if (job.counts.failed !== failedSeen) {
      failedSeen = job.counts.failed;
      loadFailed();
    }
  }

  function sample(job) {
    const now = performance.now() / 1000;
    const settled = job.counts.succeeded + job.counts.failed;  // cancelled items are not work done
    if (chart.last && now > chart.last.t) {
      const rate = Math.max(0, (settled - chart.last.settled) / (now - chart.last.t));
      chart.points.push({ t: now, rate });
      if (chart.points.length > 300) { chart.points.shift(); }
    }
    chart.last = { t: now, settled };
    draw();
  }

  function draw() {
    const canvas = $("#chart");
    if (!canvas) { return; }
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const limitTop = Math.max(0, ...chart.limits.map((l) => l.per_second));
    const top = Math.max(1, limitTop * 1.1, ...chart.points.map((p) => p.rate * 1.1));
    const y = (v) => h - 4 - (v / top) * (h - 20);
    ctx.font = "11px system-ui";
    ctx.fillStyle = "#6b7280";
    ctx.fillText(`${top.toFixed(0)}/s`, 4, 12);
    for (const limit of chart.limits) {
      ctx.strokeStyle = "#dc2626";
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(0, y(limit.per_second));
      ctx.lineTo(w, y(limit.per_second));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (chart.points.length > 1) {
      const t0 = chart.points[0].t;
      const span = Math.max(1, chart.points[chart.points.length - 1].t - t0);
      ctx.strokeStyle = "#2563eb";
      ctx.lineWidth = 2;
      ctx.beginPath();
      chart.points.forEach((p, i) => {
        const x = ((p.t - t0) / span) * (w - 8) + 4;
        if (i === 0) { ctx.moveTo(x, y(p.rate)); } else { ctx.lineTo(x, y(p.rate)); }
      });
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    $("#limits-legend").textContent = chart.limits.length
      ? chart.limits.map((l) => `limit ${l.limiter}: ${l.per_second.toFixed(1)} requests/s`).join(" · ")
      : "No rate limit on this job's task.";
  }

  async function loadFailed() {
    try {
      const page = await api(`/v1/jobs/${jobId}/results?state=failed&format=json&limit=50`);
      const body = $("#failed tbody");
      if (!body) { return; }
      $("#no-failed").hidden = page.data.length > 0;
      body.replaceChildren(...page.data.map((item) => {
        const row = document.createElement("tr");
        for (const text of [
          String(item.index),
          item.error ? `${item.error.type}: ${item.error.message}` : "",
          String(item.attempts),
          JSON.stringify(item.input).slice(0, 80),
        ]) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        }
        return row;
      }));
    } catch (error) { notice(error.message); }
  }

  api(`/v1/jobs/${jobId}`).then((job) => {
    update(job);
    state.stream = follow(`/v1/jobs/${jobId}/events`, onEvent);
  }).catch((error) => notice(error.message));
}

// ---- routing ----------------------------------------------------------------------------

function route() {
  notice("");
  const match = location.hash.match(/^#\/jobs\/([\w-]+)$/);
  if (match) { showJob(match[1]); } else { showList(); }
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("#key").value.trim();
  sessionStorage.setItem("conveyor-key", state.key);
  $("#key-form").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
