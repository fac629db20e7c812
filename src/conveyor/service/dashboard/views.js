// The limiters and workers views of the Conveyor dashboard (see app.js for the jobs).
// Each reads its endpoint every two seconds while shown: /v1/limiters, /v1/workers.
"use strict";

function cell(text, cls = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) { td.className = cls; }
  return td;
}

function entries(obj) {
  const list = Object.entries(obj || {});
  return list.length ? list.map(([k, v]) => `${k}: ${+Number(v).toFixed(2)}`).join(" · ") : "-";
}

// Show the view `templateId` and, every two seconds while it is shown, read `path` (a list:
// `data`) and put `item(entry, answer)` of each entry into `into`, or show `empty` if none;
// then `after(answer)`.
function showPolled(templateId, path, into, empty, item, after = () => {}) {
  render(templateId);
  async function load() {
    let answer;
    try { answer = await api(path); } catch (error) { notice(error.message); return; }
    const list = $(into);
    if (!list) { return; }
    $(empty).hidden = answer.data.length > 0;
    list.replaceChildren(...answer.data.map((entry) => item(entry, answer)));
    after(answer);
  }
  load();
  state.poll = setInterval(load, 2000);
}

function showLimiters() {
  showPolled("limiters-view", "/v1/limiters", "#limiter-list", "#no-limiters", (lim) => {
    const card = document.createElement("section");
    card.className = "card";
    card.dataset.limiter = lim.name;
    const title = document.createElement("h2");
    title.textContent = lim.name;
    const limits = lim.limits.map((l) => `${+l.limit.toFixed(2)} ${l.unit} / ${+l.period_s.toFixed(0)} s`);
    const steps = lim.series.map(([t0, t1, v]) => ({ t0, t1, v }));
    const rate = steps.length ? steps[steps.length - 1].v : 0;
    const requests = lim.limits.filter((l) => l.unit === "requests");
    const dl = document.createElement("dl");
    dl.className = "figures";
    for (const [name, value] of [
      ["Admitted /s (last span)", `${rate.toFixed(1)}`],
      ["Limits", limits.join(" · ") || "none"],
      ["In flight", `${lim.in_flight}${lim.concurrency_limit ? ` of ${lim.concurrency_limit}` : ""}`],
      ["Waiting", String(lim.waiting)],
      ["429s / overloads", `${lim.pushbacks.rate_limited || 0} / ${lim.pushbacks.overloaded || 0}`],
      ["API says remaining", entries(lim.stated_remaining)],
      ["Utilisation", entries(lim.utilisation)],
      ["State", lim.halted ? `halted: ${lim.halted}` : lim.paused ? "paused (Retry-After)" : "admitting"],
    ]) {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      div.append(dt, dd);
      dl.appendChild(div);
    }
    const canvas = document.createElement("canvas");
    canvas.className = "chart";
    canvas.setAttribute("aria-label", `${lim.name}: calls admitted per second`);
    card.append(title, dl, canvas);
    requestAnimationFrame(() => drawRates(canvas, steps, requests, { empty: "Sampling: the rate shows from the next read." }));
    return card;
  });
}

function showWorkers() {
  showPolled("workers-view", "/v1/workers", "#workers tbody", "#no-workers", (w, answer) => {
    const row = document.createElement("tr");
    const pill = document.createElement("span");
    pill.className = `status ${w.alive ? "running" : "failed"}`;
    pill.textContent = w.alive ? "alive" : "lease lapsed";
    const alive = document.createElement("td");
    alive.appendChild(pill);
    const jobs = Object.entries(w.jobs).map(([id, n]) => `${id.slice(0, 13)} (${n})`).join(", ");
    row.append(
      cell(w.id + (w.in_this_process ? " (this process)" : ""), "clip"),
      alive,
      cell(String(w.running_items)),
      cell(jobs || "-", "wrap"),
      cell(w.renewed_at ? `${Math.max(0, answer.now - w.renewed_at).toFixed(1)} s ago` : "-"),
      cell(createdText(w.lease_until)),
    );
    return row;
  }, (answer) => {
    const own = answer.this_process;
    $("#own-worker").textContent = own
      ? `This process's worker ${own.id} (tasks: ${(own.tasks || []).join(", ") || "none"}): ${own.alive ? "running" : "restarting"}, ${own.settled} items settled,`
        + ` ${own.restarts} restarts, ${own.store_outages} store outages${own.store_down ? " (the store is down now)" : ""}`
        + (own.last_error ? `; last error: ${own.last_error}` : "")
      : "This process runs no worker (separate `conveyor worker` processes run the jobs).";
  });
}
