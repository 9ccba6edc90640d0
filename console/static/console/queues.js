// The backlog and fleet dashboard (console/queues.html): redraws the topics (counts, the
// chart of sampled totals, rates, partitions) and the worker processes from the status JSON
// every few seconds. A file of its own, not inline: the Content-Security-Policy allows
// scripts from this site only, so markup injected into the page could not run. The chart is
// drawn here into an <svg>: no chart library, nothing loaded from elsewhere.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const box = document.getElementById("console-workers");
  const url = box.dataset.statusUrl;
  const refreshMs = Number(box.dataset.refreshMs);
  // Partition lists the user opened stay open across redraws.
  const openTopics = new Set();

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function cell(row, text, cls) { row.appendChild(el("td", text, cls)); return row.lastChild; }
  function table(caption, headers, rows) {
    const t = el("table");
    if (caption) t.appendChild(el("caption", caption));
    const head = t.createTHead().insertRow();
    headers.forEach(h => head.appendChild(el("th", h)));
    const body = t.createTBody();
    rows.forEach(r => body.appendChild(r));
    return t;
  }
  function perSecond(value) { return value === null || value === undefined ? "—" : `${value.toFixed(1)}/s`; }
  function age(topic) {
    if (!topic.oldest_age_available) return "not available";
    const s = topic.oldest_age_seconds;
    if (s === null || s === undefined) return "—";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function clock(iso) { return iso ? new Date(iso).toLocaleTimeString() : "—"; }

  // The total over the chart window: x is time (the window ends now), y starts at 0.
  function chart(topic, now, windowSeconds) {
    const W = 600, H = 100, left = 40, bottom = 14;
    const points = topic.history;
    const max = Math.max(1, ...points.map(p => p[1]));
    const x = t => left + (W - left) * (1 - Math.min(1, Math.max(0, (now - t) / windowSeconds)));
    const y = v => (H - bottom) - (H - bottom - 4) * (v / max);
    const s = svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "backlog-chart", role: "img",
                          "aria-label": `${topic.topic}: backlog over the last ${windowSeconds / 60} minutes`});
    s.dataset.points = JSON.stringify(points.map(p => p[1]));
    s.appendChild(svg("line", {x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis"}));
    s.appendChild(svg("line", {x1: left, y1: 4, x2: left, y2: H - bottom, class: "axis"}));
    s.appendChild(svg("text", {x: 2, y: 12}, String(max)));
    s.appendChild(svg("text", {x: 2, y: H - bottom}, "0"));
    s.appendChild(svg("text", {x: left, y: H - 2}, `${windowSeconds / 60} min ago`));
    s.appendChild(svg("text", {x: W - 24, y: H - 2}, "now"));
    if (points.length) {
      s.appendChild(svg("polyline", {points: points.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ")}));
      const last = points[points.length - 1];
      s.appendChild(svg("circle", {cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3}));
    } else {
      s.appendChild(svg("text", {x: left + 10, y: 40}, "no samples yet"));
    }
    return s;
  }

  function partitions(topic) {
    const busy = topic.backlog.filter(e => e.count > 0).length;
    const details = el("details", null, "partitions");
    details.open = openTopics.has(topic.topic);
    details.addEventListener("toggle", () => {
      if (details.open) openTopics.add(topic.topic); else openTopics.delete(topic.topic);
    });
    details.appendChild(el("summary", `${topic.backlog.length} partitions, ${busy} with a backlog`));
    const rows = topic.backlog.map(entry => {
      const tr = el("tr");
      tr.dataset.partition = entry.partition;
      cell(tr, entry.partition);
      cell(tr, entry.subscription);
      cell(tr, entry.count, entry.count > 0 ? "backlog-count backlog-busy" : "backlog-count");
      return tr;
    });
    details.appendChild(table(null, ["Partition", "Subscription", "Backlog"], rows));
    return details;
  }

  function topicCard(topic, status) {
    const name = `${topic.namespace}/${topic.topic}`;
    if (topic.dead_letter && topic.total === 0) {
      // An empty dead-letter topic needs one line, not a card.
      const line = el("p", `${name}: empty`, "dlq-line");
      line.id = `topic-${topic.topic}`;
      line.dataset.total = topic.total;
      return line;
    }
    const card = el("div", null, "module topic-card");
    card.id = `topic-${topic.topic}`;
    card.dataset.total = topic.total;
    const title = el("h3", `${name} — total `);
    title.appendChild(el("span", topic.total, topic.total > 0 ? "backlog-total backlog-busy" : "backlog-total"));
    card.appendChild(title);
    const flow = el("p", null, "topic-flow");
    [["in", perSecond(topic.rate_in)], ["out", perSecond(topic.rate_out)], ["oldest waiting", age(topic)]]
      .forEach(([label, value]) => {
        const span = el("span", `${label}: ${value}`);
        span.dataset.metric = label;
        flow.appendChild(span);
      });
    card.appendChild(flow);
    card.appendChild(chart(topic, status.now, status.chart_seconds));
    card.appendChild(partitions(topic));
    return card;
  }

  function renderFleet(status) {
    status.fleet.forEach(type => {
      const summary = document.getElementById(`fleet-${type.type}-summary`);
      summary.dataset.running = type.running;
      summary.dataset.desired = type.desired;
      summary.textContent = `${type.enabled ? "enabled" : "disabled"} · ${type.running} running of ${type.desired} desired` +
        ` (replicas ${type.replicas}) · logging ${type.logging_level} · ${perSecond(type.messages_per_second)} over the last minute` +
        ` · last batch ${clock(type.last_batch)}`;
      const rows = status.workers.filter(w => w.type === type.type).map(w => {
        const tr = el("tr");
        tr.dataset.pid = w.pid;
        tr.dataset.state = w.state;
        cell(tr, `${w.host}:${w.pid}`);
        cell(tr, w.state, `state-${w.state}`);
        cell(tr, clock(w.started));
        cell(tr, clock(w.last_seen), w.alive ? "" : "worker-silent");
        cell(tr, clock(w.last_batch));
        cell(tr, w.processed);
        const link = el("a", "log lines");
        link.href = w.log_url;
        cell(tr, "").appendChild(link);
        return tr;
      });
      document.getElementById(`fleet-${type.type}-processes`).replaceChildren(
        rows.length ? table(null, ["Process", "State", "Started", "Last seen", "Last batch", "Processed", "Logs"], rows)
                    : el("p", "No processes.", "console-help"));
    });
  }

  function render(status) {
    document.getElementById("console-topics").replaceChildren(...status.topics.map(t => topicCard(t, status)));
    renderFleet(status);
    document.getElementById("console-updated").textContent =
      `Updated ${new Date().toLocaleTimeString()}; refreshed every ${refreshMs} ms.`;
  }
  render(JSON.parse(document.getElementById("console-initial").textContent));
  // One refresh at a time: a slow answer that arrived after a newer one would show old counts.
  let busy = false;
  setInterval(() => {
    if (busy) return;
    busy = true;
    fetch(url, {credentials: "same-origin"})
      .then(r => r.ok ? r.json() : Promise.reject(r.status))
      .then(render)
      .catch(err => { document.getElementById("console-updated").textContent = `Refresh failed (${err}); retrying.`; })
      .finally(() => { busy = false; });
  }, refreshMs);
})();
