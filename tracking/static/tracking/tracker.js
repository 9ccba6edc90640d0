/*
 * Browser tracker for this platform's /track API. Dependency-free, ES2017. Served at /tracker.js.
 *
 *   <script src="https://api.example.com/tracker.js" data-source="my-source"
 *           data-endpoint="https://api.example.com" async></script>
 *
 * or `window.tracardiConfig = {source: "my-source", endpoint: "https://api.example.com"}` set
 * before the script (its fields win over the data- attributes). Without an endpoint the
 * origin the script was loaded from is used. Then: `tracker.track(type, properties)`.
 */
(function () {
  "use strict";
  if (window.tracker && window.tracker.isTracardiTracker) return; // the snippet was pasted twice

  const SESSION_COOKIE = "tracardi_sid";
  const PROFILE_KEY = "tracardi_pid";
  const SESSION_SECONDS = 30 * 60; // sliding: every event renews it
  const PROFILE_SECONDS = 2 * 365 * 24 * 3600;
  const MAX_BATCH = 100;
  const KEEPALIVE_LIMIT = 60000; // browsers allow 64 KiB of keepalive/beacon bodies in flight

  const script = document.currentScript;
  const given = window.tracardiConfig || {};
  function attr(name) {
    return script ? script.getAttribute("data-" + name) : null;
  }
  function option(key, name, fallback) {
    if (given[key] !== undefined && given[key] !== null) return given[key];
    const value = attr(name);
    return value === null ? fallback : value;
  }
  const scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  const config = {
    source: option("source", "source", null),
    endpoint: String(option("endpoint", "endpoint", scriptOrigin)).replace(/\/+$/, ""),
    flushInterval: Number(option("flushInterval", "flush-interval", 1000)),
    batchSize: Number(option("batchSize", "batch-size", 10)),
    maxRetries: Number(option("maxRetries", "max-retries", 3)),
    pageView: String(option("pageView", "page-view", true)) !== "false",
  };

  function readCookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }
  function writeCookie(name, value, seconds) {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${name}=${encodeURIComponent(value)}; path=/; max-age=${seconds}; SameSite=Lax${secure}`;
  }
  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function sessionId() {
    const id = readCookie(SESSION_COOKIE) || uuid4();
    writeCookie(SESSION_COOKIE, id, SESSION_SECONDS);
    return id;
  }
  function profileId() {
    try {
      const stored = localStorage.getItem(PROFILE_KEY);
      if (stored) return stored;
    } catch (e) {
      // storage disabled (privacy mode, sandboxed frame): the cookie below
    }
    return readCookie(PROFILE_KEY);
  }
  function keepProfile(id) {
    try {
      localStorage.setItem(PROFILE_KEY, id);
    } catch (e) {
      // the cookie alone then
    }
    writeCookie(PROFILE_KEY, id, PROFILE_SECONDS);
  }
  function remember(answer) {
    if (answer && answer.profile && answer.profile.id) keepProfile(answer.profile.id);
    if (answer && answer.session && answer.session.id) writeCookie(SESSION_COOKIE, answer.session.id, SESSION_SECONDS);
  }

  function currentPage() {
    return { url: location.href, path: location.pathname, title: document.title, referrer: document.referrer };
  }
  function makeEvent(type, properties) {
    // The id makes a retry idempotent: the API stores one event per id and session.
    return { id: uuid4(), type, properties: properties || {}, time: new Date().toISOString(), context: { page: currentPage() } };
  }
  function body(events) {
    const profile = profileId();
    return JSON.stringify({
      source: { id: config.source },
      session: { id: sessionId() },
      profile: profile ? { id: profile } : null,
      context: {},
      events,
      options: {},
    });
  }
  function url() {
    return config.endpoint + "/track";
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  let queue = [];
  let timer = null;
  let sending = null; // the running send, so a flush can wait for it

  // text/plain is a CORS-safelisted type: no preflight; /track reads any body as JSON.
  async function deliver(text) {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await fetch(url(), {
          method: "POST",
          body: text,
          headers: { "Content-Type": "text/plain" },
          credentials: "omit",
          keepalive: text.length < KEEPALIVE_LIMIT, // survives the page being closed mid-send
        });
        if (response.ok) {
          remember(await response.json());
          return true;
        }
        if (response.status !== 429 && response.status < 500) {
          console.warn("tracker: /track refused the events", response.status, await response.text());
          return false; // the same body would be refused again
        }
      } catch (e) {
        // a network error: retried like a 5xx
      }
      if (attempt >= config.maxRetries) {
        console.warn("tracker: giving up on " + text.length + " bytes of events");
        return false;
      }
      await sleep(500 * 2 ** attempt + Math.random() * 250);
    }
  }

  function schedule() {
    if (!timer) timer = setTimeout(flush, config.flushInterval);
  }

  // Resolves once what was queued when it was called has been sent (or given up on).
  async function flush() {
    clearTimeout(timer);
    timer = null;
    if (sending) {
      await sending;
      return flush();
    }
    if (!queue.length) return;
    sending = deliver(body(queue.splice(0, MAX_BATCH)));
    try {
      await sending;
    } finally {
      sending = null;
    }
    if (queue.length >= config.batchSize) return flush();
    if (queue.length) schedule();
  }

  // The page is going away (or to the background, where it may be discarded): whatever is
  // pending goes as a beacon, which the browser delivers after the page is gone.
  function leave() {
    if (!queue.length) return;
    clearTimeout(timer);
    timer = null;
    const text = body(queue.splice(0));
    const beaconed = navigator.sendBeacon && navigator.sendBeacon(url(), new Blob([text], { type: "text/plain" }));
    if (!beaconed) deliver(text);
  }

  function track(type, properties) {
    if (typeof type !== "string" || !type.trim()) throw new TypeError("tracker.track(type, properties): type is required");
    if (!config.source) {
      console.error("tracker: no source id; set data-source or window.tracardiConfig.source");
      return;
    }
    queue.push(makeEvent(type, properties));
    if (queue.length >= config.batchSize) flush();
    else schedule();
  }

  function pageView(properties) {
    track("page-view", properties);
    flush(); // at once: the answer brings the visitor's profile id early
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") leave();
  });
  window.addEventListener("pagehide", leave);

  window.tracker = {
    isTracardiTracker: true,
    config,
    track,
    pageView,
    flush,
    sessionId: () => readCookie(SESSION_COOKIE),
    profileId,
  };

  if (config.pageView) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => pageView());
    else pageView();
  }
})();
