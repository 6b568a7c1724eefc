// The live breaker status page: one snapshot on connect, then events; reconnects by itself.
(function () {
  "use strict";
  const root = document.getElementById("flexiai-status");
  const body = document.getElementById("flexiai-providers");
  const timeline = document.getElementById("flexiai-timeline");
  const connection = document.getElementById("flexiai-connection");
  const message = document.getElementById("flexiai-message");
  const capacityList = document.getElementById("flexiai-capacity");
  const mayChange = root.dataset.mayChange === "true";
  const ACTIONS = [["reset", "Reset"], ["force_open", "Force open"], ["disable", "Disable"]];
  const TIMELINE_LENGTH = 50;

  let providers = new Map();   // breaker name -> provider row data
  let workerStats = new Map(); // worker -> {stats, sent_at}
  let clockSkew = 0;           // server time - browser time, seconds
  let staleAfter = 70;
  let probeEvery = null;       // ACTIVE_PROBE_SECONDS, null when active probing is off
  let capacity = new Map();    // tier -> the capacity planner's last decision
  let socket = null;
  let backoff = 500;

  const now = () => Date.now() / 1000 + clockSkew;
  const fmtTime = (t) => t ? new Date((t - clockSkew) * 1000).toLocaleTimeString() : "—";

  function setConnection(status) {
    connection.dataset.status = status;
    connection.textContent = status;
  }

  function cell(row, field, text) {
    const td = row.querySelector(`[data-field="${field}"]`);
    if (td.textContent !== text) td.textContent = text;
  }

  function rowFor(p) {
    let row = body.querySelector(`tr[data-breaker="${CSS.escape(p.breaker)}"]`);
    if (row) return row;
    row = document.createElement("tr");
    row.dataset.breaker = p.breaker;
    row.dataset.provider = p.name;
    const fields = ["name", "state", "in-flight", "failures", "last-error", "opened-at",
                    "half-open-in", "probe", "latency", "success", "worker"];
    for (const field of fields) {
      const td = document.createElement("td");
      if (field === "state") {
        const badge = document.createElement("span");
        badge.className = "state";
        badge.dataset.field = field;
        td.appendChild(badge);
      } else if (field === "name") {
        // The name, and below it (in red) why the provider can't be used, if it can't.
        const name = document.createElement("span");
        name.dataset.field = "name";
        const problem = document.createElement("span");
        problem.className = "misconfigured";
        problem.dataset.field = "misconfigured";
        td.append(name, problem);
      } else {
        td.dataset.field = field;
      }
      row.appendChild(td);
    }
    if (mayChange) {
      const td = document.createElement("td");
      td.className = "actions";
      for (const [action, label] of ACTIONS) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        button.dataset.action = action;
        button.textContent = label;
        button.addEventListener("click", () => act(action, p.name));
        td.appendChild(button);
        td.appendChild(document.createTextNode(" "));
      }
      row.appendChild(td);
    }
    body.appendChild(row);
    return row;
  }

  function figures(name) {
    let count = 0, ok = 0, sum = 0, max = 0;
    const horizon = now() - staleAfter;
    for (const [worker, entry] of workerStats) {
      if (entry.sent_at < horizon) { workerStats.delete(worker); continue; }
      const s = entry.stats[name];
      if (!s) continue;
      count += s.count; ok += s.ok; sum += s.latency_ms_sum; max = Math.max(max, s.latency_ms_max);
    }
    return {count, ok, sum, max};
  }

  // The active prober's latest call to an open provider, and what probing this outage cost
  // (each probe asks for one token).
  function probeText(s) {
    if (!s.last_probe) {
      return s.state === "open" && probeEvery ? `every ${probeEvery} s, none yet` : "—";
    }
    const count = s.active_probes === 1 ? "1 probe" : `${s.active_probes} probes`;
    const pace = s.state === "open" && probeEvery ? `, every ${probeEvery} s` : "";
    return `${s.last_probe} at ${fmtTime(s.last_probe_at)} (${count}, ≤ ${s.active_probes} tokens${pace})`;
  }

  // Deployment-wide requests in flight, of the capacity when there is one, and the tier.
  function inFlightText(p) {
    const n = String(p.in_flight || 0);
    const text = p.capacity ? `${n} / ${p.capacity}` : n;
    return p.tier ? `${text} (${p.tier})` : text;
  }

  function renderTiers(tiers) {
    const line = document.getElementById("flexiai-tiers");
    if (!line) return;
    line.textContent = tiers.length ? "In flight per tier: " + tiers.map((t) =>
      `${t.tier} ${t.in_flight}${t.capacity ? ` / ${t.capacity}` : ""}${t.warming ? " (warming)" : ""}`
    ).join(" · ") : "";
  }

  function onInflight(m) {
    for (const p of providers.values()) p.in_flight = m.in_flight[p.name] || 0;
    renderTiers(m.tiers);
    renderAll();
  }

  function render(p) {
    const row = rowFor(p);
    const s = p.state;
    const changed = row.dataset.state && row.dataset.state !== s.state;
    row.dataset.state = s.state;
    cell(row, "name", p.enabled === false ? `${p.name} (provider off)`
      : p.warming ? `${p.name} (warming)` : p.name);
    cell(row, "misconfigured", p.misconfigured ? `misconfigured: ${p.misconfigured}` : "");
    if (p.misconfigured) row.dataset.misconfigured = p.misconfigured;
    else delete row.dataset.misconfigured;
    const coolingFor = s.cooldown_until ? Math.ceil(s.cooldown_until - now()) : 0;
    cell(row, "state", coolingFor > 0 ? `${s.state} (cooling down ${coolingFor} s)` : s.state);
    cell(row, "in-flight", inFlightText(p));
    cell(row, "failures", String(s.failures));
    cell(row, "last-error", s.last_error || "—");
    cell(row, "opened-at", s.state === "closed" || s.state === "disabled" ? "—" : fmtTime(s.opened_at));
    cell(row, "half-open-in", s.state === "open" && s.retry_at
      ? `${Math.max(0, Math.ceil(s.retry_at - now()))} s` : "—");
    cell(row, "probe", probeText(s));
    const f = figures(p.name);
    cell(row, "latency", f.count ? `${(f.sum / f.count).toFixed(1)} / ${f.max.toFixed(1)} ms` : "—");
    cell(row, "success", f.count ? `${(100 * f.ok / f.count).toFixed(1)} % of ${f.count}` : "—");
    cell(row, "worker", p.worker || "—");
    if (changed) { row.classList.remove("flash"); void row.offsetWidth; row.classList.add("flash"); }
  }

  function renderAll() { for (const p of providers.values()) render(p); }

  function onCapacity(decisions) {
    for (const d of decisions) capacity.set(d.tier, d);
    if (!capacityList) return;
    capacityList.replaceChildren();
    if (!capacity.size) {
      const li = document.createElement("li");
      li.textContent = "No decision yet (manage.py flexiai_capacity).";
      capacityList.appendChild(li);
    }
    for (const tier of [...capacity.keys()].sort()) {
      const d = capacity.get(tier);
      const move = d.action === "hold" ? `${d.current}` : `${d.current} → ${d.desired}`;
      const li = document.createElement("li");
      li.dataset.tier = tier;
      li.textContent = `${tier}: ${d.action.replace("_", " ")} ${move} ` +
        `(${d.reason}: ${d.detail}) at ${fmtTime(d.at)}`;
      capacityList.appendChild(li);
    }
  }

  function addTransition(t, atTop) {
    const li = document.createElement("li");
    li.dataset.transition = "";
    li.dataset.to = t.to;
    li.innerHTML = '<span class="muted when"></span> <strong class="who"></strong> ' +
      '<span class="from"></span> → <span class="to"></span> <span class="muted why"></span>';
    li.querySelector(".when").textContent = fmtTime(t.at);
    li.querySelector(".who").textContent = t.provider || t.breaker;
    li.querySelector(".from").textContent = t.from;
    li.querySelector(".to").textContent = t.to;
    const why = [t.error && `after ${t.error}`, t.failures && `${t.failures} failures`,
                 t.worker && `on ${t.worker}`].filter(Boolean).join(", ");
    li.querySelector(".why").textContent = why ? `(${why})` : "";
    if (atTop) timeline.prepend(li); else timeline.appendChild(li);
    while (timeline.children.length > TIMELINE_LENGTH) timeline.lastChild.remove();
  }

  function onSnapshot(m) {
    clockSkew = m.server_time - Date.now() / 1000;
    staleAfter = m.stale_after;
    probeEvery = m.active_probe_seconds;
    document.getElementById("flexiai-served-by").textContent = m.worker;
    document.getElementById("flexiai-store").textContent =
      `${m.store.backend}${m.store.shared ? (m.store.connected ? " (connected)" : " (disconnected)") : ""}`;
    document.getElementById("flexiai-window").textContent =
      `Latency and success: attempts of the last ${m.window} s, all workers.`;
    workerStats = new Map(Object.entries(m.stats));
    providers = new Map(m.providers.map((p) => [p.breaker, p]));
    body.replaceChildren();
    renderAll();
    renderTiers(m.tiers || []);
    timeline.replaceChildren();
    for (const t of m.transitions) addTransition(t, false);
    capacity = new Map();
    onCapacity(m.capacity || []);
  }

  function onBreaker(m) {
    const p = providers.get(m.breaker);
    if (!p) return; // a generic breaker() or a provider this page has not loaded yet
    if (p.state.version > m.state.version && p.state.state === m.state.state) return;
    const before = p.state.state;
    p.state = m.state;
    p.worker = m.worker;
    render(p);
    if (m.from && m.from !== m.state.state) {
      addTransition({breaker: m.breaker, provider: p.name, from: m.from, to: m.state.state,
                     at: m.state.changed_at || m.sent_at, worker: m.worker,
                     failures: m.state.failures, error: m.state.last_error}, true);
    } else if (before !== m.state.state) {
      addTransition({breaker: m.breaker, provider: p.name, from: before, to: m.state.state,
                     at: m.sent_at, worker: m.worker}, true);
    }
  }

  function onResult(m) {
    message.textContent = m.ok ? `${m.action} ${m.provider}: now ${m.state}` : m.error;
  }

  function act(action, provider) {
    if (action !== "reset" && !window.confirm(`${action.replace("_", " ")} ${provider}?`)) return;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({action, provider}));
    } else {
      message.textContent = "Not connected; try again in a moment.";
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socketPath}`);
    socket.onopen = () => { backoff = 500; };
    socket.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "snapshot") { onSnapshot(m); setConnection("live"); }
      else if (m.type === "breaker") onBreaker(m);
      else if (m.type === "stats") { workerStats.set(m.worker, m); renderAll(); }
      else if (m.type === "result") onResult(m);
      else if (m.type === "inflight") onInflight(m);
      else if (m.type === "capacity") onCapacity(m.decisions);
    };
    socket.onclose = (e) => {
      if (e.code === 4403) { setConnection("refused"); return; }
      setConnection("reconnecting");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  setInterval(renderAll, 1000); // countdowns and stale figures
  connect();
})();
