// bro's live viewer: steel-browser's cast protocol over /v1/sessions/cast. One socket lists
// the session's tabs (tabInfo=true), one screencasts the active tab and carries input back.
// Text from the session's pages goes in with textContent only, never as HTML.
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("bro-config").textContent);
  const root = document.documentElement;
  root.dataset.theme = cfg.theme;
  if (!cfg.showControls) root.classList.add("no-controls");
  const single = cfg.pageId !== null || cfg.pageIndex !== null;
  if (single) root.classList.add("single");

  const $ = (id) => document.getElementById(id);
  const screen = $("screen"), tabsEl = $("tabs"), urlEl = $("url"), statusEl = $("status");
  for (const id of ["back", "forward", "reload"]) $(id).disabled = !cfg.interactive;
  urlEl.readOnly = !cfg.interactive;

  let tabs = [], active = null, pageWs = null, tabWs = null, frames = 0, retries = 0;

  function castUrl(params) {
    const q = new URLSearchParams({ sessionId: cfg.sessionId });
    for (const [k, v] of Object.entries(params)) q.set(k, String(v));
    if (!cfg.interactive) q.set("interactive", "false");
    if (cfg.apiKey) q.set("apiKey", cfg.apiKey);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/v1/sessions/cast?" + q.toString();
  }

  function setStatus(text) {
    statusEl.textContent = text;
    root.dataset.status = text;
  }

  // Favicons come as data: URLs only (the host drops others, the CSP too): a page must not
  // make this browser fetch from wherever it points.
  function safeIcon(url) {
    return typeof url === "string" && /^data:image\//i.test(url) ? url : null;
  }

  function renderTabs() {
    tabsEl.replaceChildren(...tabs.map((t) => {
      const el = document.createElement("button");
      el.className = "tab" + (t.id === active ? " active" : "");
      el.dataset.pageId = t.id;
      el.title = t.url || "";
      const icon = safeIcon(t.favicon);
      if (icon) {
        const img = document.createElement("img");
        img.src = icon;
        img.referrerPolicy = "no-referrer";
        el.append(img);
      }
      el.append(document.createTextNode(t.title || t.url || "New tab"));
      el.onclick = () => activate(t.id, true);
      return el;
    }));
  }

  // Switching tabs is a new page socket with its pageId, as steel's viewer does it. Only a
  // user's click brings the page to the front (`activate`): that hides the tab in front,
  // for the client too, so opening, reconnecting and following the tab list never do.
  function activate(pageId, byUser) {
    if (pageId === active && pageWs) return;
    active = pageId;
    root.dataset.activePage = pageId;
    renderTabs();
    openPage({ pageId }, byUser && cfg.interactive);
  }

  function openPage(params, front) {
    if (pageWs) { pageWs.onclose = null; pageWs.close(); }
    setStatus("connecting");
    const ws = new WebSocket(castUrl(front ? Object.assign({ activate: true }, params) : params));
    pageWs = ws;
    ws.onopen = () => { retries = 0; setStatus("live"); };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "targetClosed") { setStatus("tab closed"); return; }
      if (typeof msg.data !== "string") return;
      screen.src = "data:image/jpeg;base64," + msg.data;
      frames += 1;
      root.dataset.frames = String(frames);
      if (document.activeElement !== urlEl) urlEl.value = msg.url || "";
      document.title = (msg.title || msg.url || "bro") + " · bro";
      const tab = tabs.find((t) => t.id === msg.pageId);
      if (tab && (tab.title !== msg.title || tab.url !== msg.url)) {
        tab.title = msg.title; tab.url = msg.url; renderTabs();
      }
    };
    ws.onclose = () => { if (pageWs === ws) { pageWs = null; lost(() => openPage(params)); } };
  }

  function openTabs() {
    const ws = new WebSocket(castUrl({ tabInfo: true }));
    tabWs = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type !== "tabList" || !Array.isArray(msg.tabs)) return;
      tabs = msg.tabs;
      renderTabs();
      if (!tabs.some((t) => t.id === active) && tabs.length > 0) activate(tabs[0].id);
    };
    ws.onclose = () => { if (tabWs === ws) { tabWs = null; lost(openTabs); } };
  }

  // A socket that drops: the session may have ended (then this page answers with a redirect
  // to the replay, so reload), or the network hiccuped (then try again, a few times).
  function lost(again) {
    setStatus("offline");
    if (retries >= 5) return;
    retries += 1;
    setTimeout(async () => {
      try {
        const r = await fetch(location.href, { redirect: "manual", cache: "no-store" });
        if (r.type === "opaqueredirect") { location.reload(); return; }
      } catch (_) { /* offline: try the socket anyway */ }
      again();
    }, 1000 * retries);
  }

  function send(msg) {
    if (cfg.interactive && pageWs && pageWs.readyState === WebSocket.OPEN) {
      msg.pageId = active;
      pageWs.send(JSON.stringify(msg));
    }
  }

  // Viewer pixels to frame pixels: the host scales frame pixels to the page's.
  function point(e) {
    const r = screen.getBoundingClientRect();
    const x = (e.clientX - r.left) * (screen.naturalWidth / Math.max(r.width, 1));
    const y = (e.clientY - r.top) * (screen.naturalHeight / Math.max(r.height, 1));
    return { x: Math.max(0, Math.round(x)), y: Math.max(0, Math.round(y)) };
  }

  // DOM button numbers to cast names; `buttons` (the ones held, as bits) is the DOM's and
  // CDP's alike, so a move with a button held drags.
  const BUTTONS = ["left", "middle", "right", "back", "forward"];
  const mods = (e) => (e.altKey ? 1 : 0) | (e.ctrlKey ? 2 : 0) | (e.metaKey ? 4 : 0) | (e.shiftKey ? 8 : 0);
  // Fast clicking counts on (e.detail 4, 5, …); the page sees at most a triple click.
  const clicks = (e) => Math.min(3, Math.max(1, e.detail || 1));
  function mouse(type, e, extra) {
    const p = point(e);
    const buttons = (e.buttons | 0) & 31;
    send({ type: "mouseEvent", event: Object.assign({ type, x: p.x, y: p.y, buttons, modifiers: mods(e) }, extra) });
  }

  if (cfg.interactive) {
    let held = false;
    screen.addEventListener("mousedown", (e) => {
      e.preventDefault();
      screen.focus();
      held = true;
      mouse("mousePressed", e, { button: BUTTONS[e.button] || "left", clickCount: clicks(e) });
    });
    // On the window: a drag released outside the screen still lets go in the page.
    window.addEventListener("mouseup", (e) => {
      if (!held && e.target !== screen) return;
      held = e.buttons !== 0;
      mouse("mouseReleased", e, { button: BUTTONS[e.button] || "left", clickCount: clicks(e) });
    });
    let moved = null;
    screen.addEventListener("mousemove", (e) => {
      if (moved === null) requestAnimationFrame(() => { mouse("mouseMoved", moved, { button: "none" }); moved = null; });
      moved = e;
    });
    screen.addEventListener("wheel", (e) => {
      e.preventDefault();
      mouse("mouseWheel", e, { button: "none", deltaX: e.deltaX, deltaY: e.deltaY });
    }, { passive: false });
    screen.addEventListener("contextmenu", (e) => e.preventDefault());
    const key = (type) => (e) => {
      if (document.activeElement === urlEl) return;
      e.preventDefault();
      const text = e.key.length === 1 ? e.key : undefined;
      send({ type: "keyEvent", event: { type, text, key: e.key, code: e.code, keyCode: e.keyCode, modifiers: mods(e) } });
    };
    document.addEventListener("keydown", key("keyDown"));
    document.addEventListener("keyup", key("keyUp"));
    urlEl.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      let url = urlEl.value.trim();
      if (!/^https?:\/\//i.test(url)) url = "https://" + url;
      send({ type: "navigation", event: { url } });
      screen.focus();
    });
    $("back").onclick = () => send({ type: "navigation", event: { action: "back" } });
    $("forward").onclick = () => send({ type: "navigation", event: { action: "forward" } });
    $("reload").onclick = () => send({ type: "navigation", event: { action: "refresh" } });
  }

  if (single) {
    active = cfg.pageId;
    openPage(cfg.pageId !== null ? { pageId: cfg.pageId } : { pageIndex: cfg.pageIndex });
  } else {
    openTabs();
  }
})();
