// The queue backlog dashboard (console/queues.html): redraws the tables from the status
// JSON every few seconds. A file of its own, not inline: the Content-Security-Policy allows
// scripts from this site only, so markup injected into the page could not run.
(function () {
  const box = document.getElementById("console-workers");
  const url = box.dataset.statusUrl;
  const refreshMs = Number(box.dataset.refreshMs);
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function table(caption, headers, rows) {
    const module = document.createElement("div");
    module.className = "module";
    const t = document.createElement("table");
    const cap = document.createElement("caption");
    cap.textContent = caption;
    t.appendChild(cap);
    const head = t.createTHead().insertRow();
    headers.forEach(h => { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
    const body = t.createTBody();
    rows.forEach(r => body.appendChild(r));
    module.appendChild(t);
    return module;
  }
  function render(status) {
    const topics = document.getElementById("console-topics");
    topics.replaceChildren(...status.topics.map(topic => {
      const rows = topic.backlog.map(entry => {
        const tr = document.createElement("tr");
        tr.dataset.partition = entry.partition;
        cell(tr, entry.partition);
        cell(tr, entry.subscription);
        cell(tr, entry.count, entry.count > 0 ? "backlog-count backlog-busy" : "backlog-count");
        return tr;
      });
      const module = table(`${topic.namespace}/${topic.topic} — total ${topic.total}`,
                           ["Partition", "Subscription", "Backlog"], rows);
      module.id = `topic-${topic.topic}`;
      module.dataset.total = topic.total;
      return module;
    }));
    const workers = status.workers.map(w => {
      const tr = document.createElement("tr");
      cell(tr, w.type); cell(tr, `${w.host}:${w.pid}`); cell(tr, w.started);
      cell(tr, w.last_seen, w.alive ? "" : "worker-silent"); cell(tr, w.processed);
      return tr;
    });
    box.replaceChildren(table("Worker processes", ["Type", "Process", "Started", "Last seen", "Processed"], workers));
    document.getElementById("console-updated").textContent =
      `Updated ${new Date().toLocaleTimeString()}; refreshed every ${refreshMs} ms.`;
  }
  render(JSON.parse(document.getElementById("console-initial").textContent));
  setInterval(() => {
    fetch(url, {credentials: "same-origin"})
      .then(r => r.ok ? r.json() : Promise.reject(r.status))
      .then(render)
      .catch(err => { document.getElementById("console-updated").textContent = `Refresh failed (${err}); retrying.`; });
  }, refreshMs);
})();
