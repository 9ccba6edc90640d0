// The worker log page (console/logs.html): a live tail. Polls the lines JSON with the page's
// own filters (its query string, so the dashboard's ?worker_type=&pid= links work) and
// `after=<last id shown>`, and appends what is new. A file of its own, not inline: the
// Content-Security-Policy allows scripts from this site only.
(function () {
  const list = document.getElementById("log-lines");
  if (list.dataset.active !== "1") return;
  const pollMs = Number(list.dataset.pollMs);
  const MAX_SHOWN = 2000;  // older lines leave the page, so a long tail does not slow it down
  let lastId = null;
  let busy = false;

  function lineElement(line) {
    const li = document.createElement("li");
    li.className = `log-line level-${line.level}`;
    li.dataset.id = line.id;
    li.dataset.level = line.level;
    const process = document.createElement("span");
    process.className = "log-process";
    process.textContent = `${line.worker_type} ${line.pid}@${line.host}`;
    const message = document.createElement("span");
    message.className = "log-message";
    message.textContent = line.message;
    li.append(process, message);
    return li;
  }

  function poll() {
    if (busy) return;
    busy = true;
    const params = new URLSearchParams(window.location.search);
    params.delete("after");
    if (lastId !== null) params.set("after", lastId);
    fetch(`${list.dataset.linesUrl}?${params}`, {credentials: "same-origin"})
      .then(r => r.ok ? r.json() : Promise.reject(r.status))
      .then(data => {
        const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
        data.lines.forEach(line => list.appendChild(lineElement(line)));
        if (data.lines.length) lastId = data.lines[data.lines.length - 1].id;
        else if (lastId === null) lastId = 0;
        while (list.childElementCount > MAX_SHOWN) list.firstElementChild.remove();
        if (atBottom && data.lines.length) window.scrollTo(0, document.body.scrollHeight);
        const dropped = document.getElementById("log-dropped");
        dropped.textContent = data.dropped;
        dropped.classList.toggle("log-dropped-some", data.dropped > 0);
        document.getElementById("log-updated").textContent =
          `Updated ${new Date().toLocaleTimeString()}; new lines appear every ${pollMs} ms.`;
      })
      .catch(err => {
        document.getElementById("log-updated").textContent = `Refresh failed (${err}); retrying.`;
      })
      .finally(() => { busy = false; });
  }
  poll();
  setInterval(poll, pollMs);
})();
