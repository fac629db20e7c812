// The Conveyor dashboard: plain JavaScript, no build step. It talks to the same API as any
// client: /v1/service, /v1/jobs, /v1/files, and follows Server-Sent Events (/v1/events for
// the list, /v1/jobs/{id}/events for a job). Events are read with fetch (not EventSource)
// so that the API key can travel in the Authorization header, never in a URL. Every path is
// resolved against the page, so the dashboard works where the service is mounted (/jobs/).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { key: sessionStorage.getItem("conveyor-key") || "", stream: null, poll: null, tasks: [] };

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
  const now = Date.now() / 1000;
  body.replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.job = job.id;
    const pill = statusPill(job);
    row.innerHTML = `<td><a href="#/jobs/${job.id}"><code>${job.id.slice(0, 13)}</code></a></td>
      <td class="clip"></td><td><span class="status ${pill.kind}"></span></td>
      <td><div class="bar"><div style="width:${doneFraction(job)}%"></div><span>${pct(job)}</span></div></td>
      <td>${job.counts.succeeded}</td><td>${job.counts.failed}</td><td>${job.counts.total}</td>
      <td class="when"></td><td class="when"></td><td class="spend"></td>`;
    row.children[1].textContent = job.task;
    row.children[1].title = job.task;
    row.children[2].firstChild.textContent = pill.text;
    row.children[7].textContent = createdText(job.created_at);
    row.children[8].textContent = durationText(jobDuration(job, now));
    const spend = spendText(job.summary);
    if (spend) {
      row.children[9].textContent = spend.cost;
      row.children[9].title = `tokens: ${spend.tokens}`;
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
  const chart = { steps: [], limits: [], series: null };
  let failedSeen = -1;
  let current = null;
  $("#cancel", view).addEventListener("click", async () => {
    const left = current ? current.counts.pending + current.counts.running : 0;
    if (!window.confirm(`Cancel job ${jobId}? Its ${left} unfinished items will not run.`)) { return; }
    try {
      update(await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" }));
      flash("Cancelling: items in flight finish, the others will not run.");
    } catch (error) { notice(error.message); }
  });
  $("#retry", view).addEventListener("click", async () => {
    try {
      const answer = await api(`/v1/jobs/${jobId}/retry`, { method: "POST" });
      update(answer.job);
      flash(`Retrying ${answer.retried} failed item${answer.retried === 1 ? "" : "s"}.`);
      if (!state.stream) { state.stream = follow(`/v1/jobs/${jobId}/events`, onEvent); }
      watchSeries();
    } catch (error) { notice(error.message); }
  });

  function flash(text) {
    const el = $("#action-status");
    if (el) { el.textContent = text; }
  }

  function onEvent(name, job) {
    update(job);
    if (name === "done") { state.stream = null; }
  }

  function update(job) {
    if (!$("#job-id")) { return; }
    current = job;
    $("#job-id").textContent = job.id;
    const badge = $("#job-status");
    const pill = statusPill(job);
    badge.textContent = pill.text;
    badge.className = `status ${pill.kind}`;
    $("#job-task").textContent = job.task;
    $("#job-step").textContent = job.step || "";
    $("#job-created").textContent = createdText(job.created_at);
    $("#job-duration").textContent = durationText(jobDuration(job, Date.now() / 1000));
    $("#job-bar").style.width = `${doneFraction(job)}%`;
    $("#job-progress").textContent = pct(job);
    for (const k of ["succeeded", "failed", "cancelled", "pending", "total"]) {
      $(`#n-${k}`).textContent = job.counts[k];
    }
    $("#n-claimed").textContent = job.counts.running;
    const s = job.summary;
    $("#throughput").textContent = `${s.throughput_per_s.toFixed(1)} /s`;
    $("#latency").textContent = latencyText(s);
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
    if (job.counts.failed !== failedSeen) {
      failedSeen = job.counts.failed;
      loadFailed();
    }
  }

  // The rate series, from the service: read every second while the job is active, once more
  // when it is done (its whole history is kept with it).
  async function loadSeries() {
    try {
      const series = await api(`/v1/jobs/${jobId}/series`);
      if (!$("#chart")) { return; }
      chart.series = series;
      chart.steps = jobSteps(series);
      chart.limits = series.limits.filter((l) => l.unit === "requests");
      const flying = series.in_flight;
      $("#n-running").textContent = flying === null ? "?" : flying;
      $("#n-running").title = flying === null ? "run by another process: only the claimed count is known" : "";
      draw();
      if (["completed", "failed", "cancelled"].includes(series.status) && state.poll) {
        clearInterval(state.poll);
        state.poll = null;
      }
    } catch (error) { notice(error.message); }
  }
  function watchSeries() {
    if (state.poll) { clearInterval(state.poll); }
    state.poll = setInterval(loadSeries, 1000);
    loadSeries();
  }

  function draw() {
    const canvas = $("#chart");
    if (!canvas) { return; }
    window.lastChart = drawRates(canvas, chart.steps, chart.limits);
    const s = chart.series;
    const per = s && s.bucket_s > 1 ? `each point: the mean over ${s.bucket_s} s` : "one point a second";
    $("#limits-legend").textContent = (chart.limits.length
      ? chart.limits.map((l) => `limit ${l.limiter}: ${+l.per_second.toFixed(2)} requests/s (dashed)`).join(" · ")
      : "No rate limit on this job's task.") + ` · ${per}; busiest second: ${s ? s.busiest_second : 0} items`;
  }

  async function loadFailed() {
    try {
      const page = await api(`/v1/jobs/${jobId}/results?state=failed&format=json&limit=50`);
      const body = $("#failed tbody");
      if (!body) { return; }
      $("#no-failed").hidden = page.data.length > 0;
      body.replaceChildren(...page.data.map((item) => {
        const row = document.createElement("tr");
        const input = JSON.stringify(item.input);
        for (const [text, cls] of [
          [String(item.index), ""],
          [item.error ? `${item.error.type}: ${item.error.message}` : "", "wrap"],
          [String(item.attempts), ""],
          [input.length > 200 ? `${input.slice(0, 200)}…` : input, "clip"],
        ]) {
          const cell = document.createElement("td");
          if (cls === "wrap") {  // a long error: three lines, all of it on hover
            const clamp = document.createElement("div");
            clamp.className = "clamp";
            clamp.textContent = text;
            clamp.title = text.slice(0, 4000);
            cell.appendChild(clamp);
          } else { cell.textContent = text; }
          if (cls) { cell.className = cls; }
          if (cls === "clip") { cell.title = input.slice(0, 2000); }
          row.appendChild(cell);
        }
        return row;
      }));
    } catch (error) { notice(error.message); }
  }

  api(`/v1/jobs/${jobId}`).then((job) => {
    update(job);
    state.stream = follow(`/v1/jobs/${jobId}/events`, onEvent);
    watchSeries();
  }).catch((error) => notice(error.message));
}

// ---- routing ----------------------------------------------------------------------------

function route() {
  notice("");
  if (state.poll) { clearInterval(state.poll); state.poll = null; }
  const match = location.hash.match(/^#\/jobs\/([\w-]+)$/);
  if (match) { showJob(match[1]); }
  else if (location.hash === "#/limiters") { showLimiters(); }
  else if (location.hash === "#/workers") { showWorkers(); }
  else { showList(); }
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
