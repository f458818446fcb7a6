/* Duty-officer page: live alert list (server-sent events), camera wall, installer zone drawing.
 * Plain JS, no build step, no external resources. Every text from the server goes in through
 * textContent (never innerHTML). Auth rides on the HttpOnly session cookie. */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const IDENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
  const PAGE = 50;

  const store = {
    get(key, fallback) { try { const v = localStorage.getItem("gw." + key); return v === null ? fallback : v; } catch (e) { return fallback; } },
    set(key, value) { try { localStorage.setItem("gw." + key, value); } catch (e) { /* private mode */ } },
  };

  const state = {
    lang: store.get("lang", "zh") === "en" ? "en" : "zh",
    tab: "alerts",
    rev: 0,
    events: new Map(),      // event_id -> event (as shown)
    total: 0,
    offset: 0,
    cameras: [],
    filters: { camera: "", type: "", state: "", unacked: false },
    es: null,
    sound: store.get("sound", "0") === "1",
    fresh: new Set(),       // ids that arrived live and are not yet seen/acked
    inst: { camera: "", points: [], timer: null },
    wallTimer: null,
    types: {},              // alert type -> {zh, en}, from /api/info (the gateway's one vocabulary)
  };

  // ------------------------------------------------------------------ i18n

  function t(key, vars) {
    const table = window.I18N[state.lang] || window.I18N.zh;
    let text = table[key];
    if (text === undefined) text = window.I18N.zh[key] !== undefined ? window.I18N.zh[key] : key;
    if (vars) for (const k of Object.keys(vars)) text = text.split("{" + k + "}").join(String(vars[k]));
    return text;
  }
  function typeName(type) {
    const labels = state.types[type];
    return (labels && (labels[state.lang] || labels.zh)) || type;
  }
  function applyI18n() {
    document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
    $$("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $$("[data-i18n-ph]").forEach((el) => { el.placeholder = t(el.dataset.i18nPh); });
    $$("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    $("#lang").textContent = state.lang === "en" ? "中文" : "EN";
    fillTypeFilter();
    fillCameraFilter();
    updateTitle();
  }

  // ------------------------------------------------------------------ http

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {}));
    if (response.status === 401) {
      toast(t("session.expired"), true);
      setTimeout(() => { window.location.href = "/login"; }, 1200);
      throw new Error("unauthorised");
    }
    if (response.status === 204) return null;
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail
          : Array.isArray(body.detail) ? body.detail.map((item) => item.msg || JSON.stringify(item)).join("; ")
          : JSON.stringify(body.detail);
      } catch (e) { /* not JSON */ }
      throw new Error(response.status + " " + detail);
    }
    return response.json();
  }

  // ------------------------------------------------------------------ time

  function clockOf(iso) {        // the gateway's wall clock, as written in the timestamp
    const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)/.exec(iso || "");
    return m ? { date: m[1] + "-" + m[2] + "-" + m[3], md: m[2] + "-" + m[3], hms: m[4] + ":" + m[5] + ":" + m[6] } : null;
  }
  function todayOf(iso) {
    const c = clockOf(iso);
    return c ? c.date : "";
  }
  let serverToday = "";
  function shortTime(iso) {
    const c = clockOf(iso);
    if (!c) return "";
    return c.date === serverToday ? c.hms : c.md + " " + c.hms;
  }
  function ago(iso) {
    const ms = Date.now() - Date.parse(iso);
    if (!isFinite(ms)) return "";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 10) return t("time.justNow");
    if (s < 60) return t("time.secAgo", { n: s });
    if (s < 3600) return t("time.minAgo", { n: Math.floor(s / 60) });
    if (s < 86400) return t("time.hourAgo", { n: Math.floor(s / 3600) });
    return t("time.dayAgo", { n: Math.floor(s / 86400) });
  }
  function duration(fromIso, toIso) {
    const s = Math.max(0, Math.round((Date.parse(toIso) - Date.parse(fromIso)) / 1000));
    if (!isFinite(s)) return "";
    if (s < 60) return t("dur.s", { n: s });
    if (s < 3600) return t("dur.m", { n: Math.round(s / 60) });
    return t("dur.h", { h: Math.floor(s / 3600), m: Math.round((s % 3600) / 60) });
  }

  // ------------------------------------------------------------------ helpers

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  let toastTimer = null;
  function toast(text, bad, ms) {
    const box = $("#toast");
    box.textContent = text;
    box.classList.toggle("bad", !!bad);
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, ms || 3500);
  }
  function officer() {
    return ($("#officer").value || "").trim() || "web";
  }
  function titleOf(ev) {
    if (state.lang === "zh" && ev.title_zh) return ev.title_zh;
    const place = ev.zone_name || ev.camera_name || ev.camera_id || "";
    let title = typeName(ev.type) + (place ? ": " + place : "");
    const n = ev.state === "end" ? ev.peak_count : ev.count;
    if (n !== null && n !== undefined) title += " · " + t("alert.people", { n: n });
    return title;
  }

  // ------------------------------------------------------------------ alerts: list

  function matches(ev) {
    const f = state.filters;
    if (f.camera && ev.camera_id !== f.camera) return false;
    if (f.type && ev.type !== f.type) return false;
    if (f.state === "active" && !ev.active) return false;
    if (f.state === "end" && ev.state !== "end") return false;
    if (f.unacked && ev.ack) return false;
    return true;
  }
  function query(extra) {
    const f = state.filters;
    const params = new URLSearchParams();
    if (f.camera) params.set("camera", f.camera);
    if (f.type) params.set("type", f.type);
    if (f.state) params.set("state", f.state);
    if (f.unacked) params.set("acked", "false");
    for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
    return params.toString();
  }

  async function loadEvents(append) {
    const offset = append ? state.offset : 0;
    const page = await api("/api/events?" + query({ limit: PAGE, offset: offset }));
    if (!append) {
      state.events.clear();
      $("#alert-list").textContent = "";
      state.rev = Math.max(state.rev, page.rev);
    }
    for (const ev of page.items) upsert(ev, false);
    state.offset = offset + page.items.length;
    state.total = page.total;
    renderListFooter();
    return page;
  }
  function renderListFooter() {
    const shown = $("#alert-list").children.length;
    $("#alerts-empty").hidden = shown > 0;
    $("#more").hidden = state.offset >= state.total;
    $("#list-count").textContent = state.total ? t("list.count", { n: Math.max(state.total, shown) }) : "";
  }

  function upsert(ev, live) {
    const list = $("#alert-list");
    const existing = list.querySelector('[data-id="' + ev.event_id + '"]');
    const known = state.events.get(ev.event_id);
    if (known && known.rev > ev.rev) return;  // an older copy of what we show
    if (!matches(ev)) {
      if (existing) { existing.remove(); state.events.delete(ev.event_id); }
      renderListFooter();
      return;
    }
    state.events.set(ev.event_id, ev);
    const card = renderAlert(ev, existing);
    if (!existing) {
      // keep newest start first
      let before = null;
      for (const other of list.children) {
        const o = state.events.get(other.dataset.id);
        if (o && Date.parse(o.started_at) < Date.parse(ev.started_at)) { before = other; break; }
      }
      list.insertBefore(card, before);
      if (live) {
        state.total += 1;
        state.offset += 1;
        state.fresh.add(ev.event_id);
        card.classList.add("arrived");
        if (!ev.ack) beep(ev.severity);
      }
    } else if (live) {
      card.classList.remove("changed");
      void card.offsetWidth;  // restart the animation
      card.classList.add("changed");
    }
    if (ev.ack) state.fresh.delete(ev.event_id);
    card.classList.toggle("fresh", state.fresh.has(ev.event_id));
    renderListFooter();
  }

  function renderAlert(ev, card) {
    if (!card) {
      card = el("li", "alert");
      card.dataset.id = ev.event_id;
      const thumb = el("button", "thumb");
      thumb.type = "button";
      thumb.appendChild(el("img"));
      thumb.appendChild(el("span", "thumb-empty"));
      thumb.addEventListener("click", () => openLightbox(state.events.get(card.dataset.id)));
      const body = el("div", "body");
      const head = el("div", "head");
      head.append(el("span", "chip type"), el("span", "chip state"), el("span", "chip sev"), el("span", "chip new-chip"));
      body.append(head, el("h3", "title"), el("div", "meta place"), el("div", "meta when"),
                  el("div", "meta case-status"));
      const actions = el("div", "actions");
      const ack = el("button", "btn ack-btn");
      ack.type = "button";
      ack.addEventListener("click", () => acknowledge(card.dataset.id, ack));
      const acked = el("div", "acked");
      actions.append(ack, acked);
      card.append(el("div", "bar"), thumb, body, actions);
    }
    card.className = "alert sev-" + Math.min(4, Math.max(1, ev.severity || 2)) + (ev.active ? " active" : " ended") +
      (ev.ack ? " is-acked" : " unacked") + (card.classList.contains("arrived") ? " arrived" : "");
    card.dataset.rev = ev.rev;

    const img = $(".thumb img", card);
    const url = ev.peak_snapshot_url || ev.snapshot_url;
    const empty = $(".thumb-empty", card);
    if (url) {
      if (img.dataset.src !== url) { img.src = url; img.dataset.src = url; }
      img.alt = titleOf(ev);
      img.hidden = false;
      empty.hidden = true;
    } else {
      img.hidden = true;
      empty.hidden = false;
      empty.textContent = ev.snapshot_evicted ? t("alert.evicted") : t("alert.noSnapshot");
    }

    $(".chip.type", card).textContent = typeName(ev.type);
    const st = $(".chip.state", card);
    st.textContent = ev.active ? t("alert.active") : t("alert.ended");
    st.classList.toggle("on", ev.active);
    $(".chip.sev", card).textContent = t("alert.severity", { n: ev.severity });
    $(".chip.new-chip", card).textContent = t("alert.new");
    $(".title", card).textContent = titleOf(ev);

    const place = $(".place", card);
    place.textContent = "";
    place.append(el("span", "cam", ev.camera_name || ev.camera_id));
    if (ev.grid_id) place.append(el("span", "grid", t("alert.grid") + " " + ev.grid_id));
    if (ev.address) place.append(el("span", "addr", ev.address));

    const when = $(".when", card);
    when.textContent = "";
    if (ev.count !== null && ev.count !== undefined) {
      const count = el("span", "count");
      count.append(el("b", "", String(ev.active ? ev.count : ev.peak_count)));
      count.append(document.createTextNode(" " + (state.lang === "en" ? "people" : "人")));
      if (ev.active && ev.peak_count !== null && ev.peak_count > ev.count) {
        count.append(el("small", "", " (" + t("alert.peak") + " " + ev.peak_count + ")"));
      }
      when.append(count);
    }
    const time = el("span", "time");
    time.append(el("b", "", shortTime(ev.started_at)));
    time.append(el("small", "ago", " " + ago(ev.started_at)));
    time.title = ev.started_at;
    when.append(time);
    if (ev.ended_at) when.append(el("span", "dur", t("alert.duration", { d: duration(ev.started_at, ev.ended_at) })));
    renderCase(ev.case, $(".case-status", card));

    const ackBtn = $(".ack-btn", card);
    const acked = $(".acked", card);
    if (ev.ack) {
      ackBtn.hidden = true;
      acked.hidden = false;
      acked.textContent = "";
      acked.append(el("span", "ok", "✓ " + t("alert.acked")));
      acked.append(el("span", "who", ev.ack.by));
      acked.append(el("span", "at", shortTime(ev.ack.at)));
      if (ev.ack.case_id) acked.append(el("span", "case", t("alert.case", { id: ev.ack.case_id })));
    } else {
      ackBtn.hidden = false;
      acked.hidden = true;
      if (!ackBtn.disabled) ackBtn.textContent = t("alert.ack");
    }
    return card;
  }

  // The centre's case progress (工单状态): every field is the centre's text, shown as text.
  function renderCase(step, line) {
    line.textContent = "";
    line.hidden = !step;
    if (!step) return;
    line.dataset.status = step.status;
    line.append(el("span", "case-label", t("case.status")));
    line.append(el("b", "case-state", t("case." + step.status)));
    line.append(el("span", "case-id", step.case_id));
    if (step.by) line.append(el("span", "case-by", step.by));
    const at = el("span", "case-at", shortTime(step.at));
    at.title = step.at;
    line.append(at);
    if (step.note) line.append(el("span", "case-note", step.note));
  }

  async function acknowledge(id, button) {
    button.disabled = true;
    button.textContent = t("alert.acking");
    try {
      const result = await api("/api/events/" + encodeURIComponent(id) + "/ack", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ by: officer() }),
      });
      button.disabled = false;
      state.fresh.delete(id);
      if (result.event) upsert(result.event, false);
      toast(t("ack.done", { title: result.event ? titleOf(result.event) : id }));
      refreshStats();
    } catch (error) {
      button.disabled = false;
      button.textContent = t("alert.ack");
      toast(t("ack.failed", { msg: error.message }), true);
    }
  }

  // ------------------------------------------------------------------ alerts: live stream

  function setLive(mode) {
    const box = $("#live");
    box.dataset.state = mode;
    $("#live-text").textContent = t("live." + mode);
    $("#live-text").dataset.i18n = "live." + mode;
  }
  let retryTimer = null;
  function connect() {
    if (state.es) state.es.close();
    clearTimeout(retryTimer);
    setLive("connecting");
    const es = new EventSource("/api/events/stream?after=" + state.rev);
    state.es = es;
    es.addEventListener("open", () => setLive("open"));
    es.addEventListener("hello", () => setLive("open"));
    es.addEventListener("alert", (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      state.rev = Math.max(state.rev, ev.rev);
      upsert(ev, true);
      scheduleStats();
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        setLive("retry");
        // the browser gave up (e.g. 401 or server gone): check the session, then reopen
        retryTimer = setTimeout(async () => {
          try { await api("/api/info"); connect(); } catch (e) { retryTimer = setTimeout(connect, 5000); }
        }, 2000);
      } else {
        setLive("retry");
      }
    });
  }

  // ------------------------------------------------------------------ stats, title, sound

  let statsTimer = null;
  function scheduleStats() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(refreshStats, 400);
  }
  async function refreshStats() {
    try {
      const info = await api("/api/info");
      setGatewayClock(info.time);
      const since = info.time.slice(0, 10) + "T00:00:00" + info.time.slice(19);
      const [active, unacked, today] = await Promise.all([
        api("/api/events?state=active&limit=1"),
        api("/api/events?acked=false&state=active&limit=1"),
        api("/api/events?limit=1&since=" + encodeURIComponent(since)),
      ]);
      $("#stat-active").textContent = active.total;
      $("#stat-unacked").textContent = unacked.total;
      $("#stat-today").textContent = today.total;
      $(".stat-active").classList.toggle("hot", active.total > 0);
      $(".stat-unacked").classList.toggle("hot", unacked.total > 0);
      const badge = $("#badge-unacked");
      badge.textContent = unacked.total;
      badge.hidden = unacked.total === 0;
      state.unacked = unacked.total;
      updateTitle();
    } catch (e) { /* shown by the live indicator */ }
  }
  function updateTitle() {
    const n = state.unacked || 0;
    document.title = (n ? "(" + n + ") " : "") + t("doc.title");
  }
  let audio = null;
  function beep(severity) {
    if (!state.sound) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const tones = severity >= 3 ? [880, 660, 880] : [740];
      tones.forEach((freq, i) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, audio.currentTime + i * 0.18);
        gain.gain.exponentialRampToValueAtTime(0.25, audio.currentTime + i * 0.18 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + i * 0.18 + 0.16);
        osc.connect(gain).connect(audio.destination);
        osc.start(audio.currentTime + i * 0.18);
        osc.stop(audio.currentTime + i * 0.18 + 0.17);
      });
    } catch (e) { /* no audio */ }
  }

  // ------------------------------------------------------------------ filters

  function fillTypeFilter() {
    const select = $("#f-type");
    const current = select.value;
    select.textContent = "";
    select.append(new Option(t("filter.allTypes"), ""));
    for (const type of Object.keys(state.types)) select.append(new Option(typeName(type), type));
    select.value = current;
  }
  function fillCameraFilter() {
    const select = $("#f-camera");
    const current = select.value;
    select.textContent = "";
    select.append(new Option(t("filter.allCameras"), ""));
    for (const cam of state.cameras) select.append(new Option(cam.name || cam.id, cam.id));
    select.value = current;
  }
  function bindFilters() {
    $("#f-camera").addEventListener("change", (e) => { state.filters.camera = e.target.value; reload(); });
    $("#f-type").addEventListener("change", (e) => { state.filters.type = e.target.value; reload(); });
    $("#f-unacked").addEventListener("change", (e) => { state.filters.unacked = e.target.checked; reload(); });
    $$("#f-state button").forEach((b) => b.addEventListener("click", () => {
      $$("#f-state button").forEach((o) => o.classList.toggle("on", o === b));
      state.filters.state = b.dataset.value;
      reload();
    }));
    $("#more").addEventListener("click", () => loadEvents(true).catch((e) => toast(e.message, true)));
  }
  function reload() {
    loadEvents(false).catch((e) => toast(e.message, true));
  }

  // ------------------------------------------------------------------ lightbox

  function openLightbox(ev) {
    if (!ev) return;
    const url = ev.peak_snapshot_url || ev.snapshot_url;
    if (!url) return;
    $("#lightbox-img").src = url;
    $("#lightbox-caption").textContent = titleOf(ev) + " · " + (ev.camera_name || ev.camera_id) + " · " + shortTime(ev.started_at);
    $("#lightbox").hidden = false;
  }
  function bindLightbox() {
    $("#lightbox").addEventListener("click", () => { $("#lightbox").hidden = true; });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("#lightbox").hidden = true; });
  }

  // ------------------------------------------------------------------ cameras

  async function loadCameras() {
    try {
      state.cameras = await api("/api/cameras");
    } catch (e) { return; }
    const online = state.cameras.filter((c) => c.state === "streaming").length;
    $("#stat-cameras").textContent = online + "/" + state.cameras.length;
    const down = state.cameras.length - online;
    $("#badge-offline").textContent = down;
    $("#badge-offline").hidden = down === 0;
    fillCameraFilter();
    if (state.tab === "cameras") renderWall();
    if (state.tab === "installer") fillInstallerCameras();
  }

  function renderWall() {
    const wall = $("#wall");
    const seen = new Set();
    for (const cam of state.cameras) {
      seen.add(cam.id);
      let card = wall.querySelector('[data-camera="' + cam.id + '"]');
      if (!card) {
        card = el("article", "cam");
        card.dataset.camera = cam.id;
        const screen = el("div", "screen");
        const img = el("img");
        img.alt = "";
        screen.append(img, el("div", "noframe"), el("span", "pill"));
        const info = el("div", "cam-info");
        const head = el("div", "cam-head");
        head.append(el("h3"), el("button", "link-btn draw"));
        info.append(head, el("div", "cam-place"), el("div", "cam-stats"), el("div", "cam-error"));
        card.append(screen, info);
        $(".draw", card).type = "button";
        $(".draw", card).addEventListener("click", () => { state.inst.camera = cam.id; showTab("installer"); });
        wall.append(card);
      }
      card.className = "cam st-" + cam.state;
      $("h3", card).textContent = cam.name || cam.id;
      $(".draw", card).textContent = t("cam.draw");
      $(".draw", card).hidden = !cam.frame_size;
      const pill = $(".pill", card);
      pill.textContent = t("cam.state." + cam.state);
      const place = $(".cam-place", card);
      place.textContent = "";
      place.append(el("span", "", cam.id));
      if (cam.grid_id) place.append(el("span", "", t("cam.grid") + " " + cam.grid_id));
      if (cam.address) place.append(el("span", "", cam.address));
      const stats = $(".cam-stats", card);
      stats.textContent = "";
      const stat = (label, value, bad) => {
        const s = el("span", bad ? "bad" : "");
        s.append(el("small", "", label), el("b", "", value));
        stats.append(s);
      };
      stat("fps", cam.analysed_fps.toFixed(1) + " / " + cam.decoded_fps.toFixed(1));
      stat(t("cam.age"), cam.last_frame_age_s === null ? "–" : cam.last_frame_age_s.toFixed(1) + " s",
        cam.last_frame_age_s !== null && cam.last_frame_age_s > 5);
      stat(t("cam.reconnects"), String(cam.reconnects), cam.reconnects > 0);
      if (cam.skip_ratio !== null) stat(t("cam.skip"), Math.round(cam.skip_ratio * 100) + "%");
      $(".cam-error", card).textContent = cam.last_error || "";
      $(".cam-error", card).hidden = !cam.last_error;
      const noframe = $(".noframe", card);
      noframe.textContent = t("cam.noframe");
      noframe.hidden = !!cam.frame_size;
      if (cam.frame_size) refreshImage($(".screen img", card), cam.snapshot_url);
      else $(".screen img", card).hidden = true;
    }
    for (const card of $$("[data-camera]", wall)) if (!seen.has(card.dataset.camera)) card.remove();
  }

  function refreshImage(img, url) {
    if (img.dataset.loading === "1") return;
    img.dataset.loading = "1";
    const next = new Image();
    next.onload = () => { img.src = next.src; img.hidden = false; img.dataset.loading = "0"; };
    next.onerror = () => { img.dataset.loading = "0"; };
    next.src = url + "?t=" + Date.now();
  }

  // ------------------------------------------------------------------ installer

  function fillInstallerCameras() {
    const select = $("#inst-camera");
    const usable = state.cameras.filter((c) => c.frame_size);
    const wanted = state.inst.camera || select.value || (usable[0] && usable[0].id) || "";
    const signature = usable.map((c) => c.id + ":" + c.name).join("|");
    if (select.dataset.signature !== signature || select.dataset.lang !== state.lang) {
      select.textContent = "";
      for (const cam of usable) select.append(new Option((cam.name || cam.id) + " (" + cam.id + ")", cam.id));
      if (!usable.length) select.append(new Option(t("inst.noCameras"), ""));
      select.dataset.signature = signature;
      select.dataset.lang = state.lang;
    }
    if (wanted && usable.some((c) => c.id === wanted)) select.value = wanted;
    if (select.value !== state.inst.camera) {
      state.inst.camera = select.value;
      state.inst.points = [];
      loadInstallerImage();
    }
    renderInstaller();
  }
  function instCamera() {
    return state.cameras.find((c) => c.id === state.inst.camera);
  }
  function loadInstallerImage() {
    const cam = instCamera();
    const img = $("#inst-img");
    $("#inst-empty").hidden = !!(cam && cam.frame_size);
    if (!cam || !cam.frame_size) { img.hidden = true; return; }
    refreshImage(img, cam.snapshot_url);
  }
  function svgNode(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function pointsAttr(points) { return points.map((p) => p[0] + "," + p[1]).join(" "); }

  function renderInstaller() {
    const cam = instCamera();
    const svg = $("#inst-svg");
    svg.textContent = "";
    if (!cam || !cam.frame_size) { renderYaml(); return; }
    const [w, h] = cam.frame_size;
    // as large as the stage allows while the whole picture stays on screen
    $("#inst-stage").style.width = "min(100%, calc((100vh - 230px) * " + (w / h).toFixed(4) + "))";
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    const unit = Math.max(w, h) / 400;
    for (const mask of cam.masks) {
      svg.append(svgNode("polygon", { points: pointsAttr(mask.polygon), class: "mask", "stroke-width": unit }));
    }
    for (const zone of cam.zones) {
      svg.append(svgNode("polygon", { points: pointsAttr(zone.polygon), class: "zone", "stroke-width": unit * 1.5,
        "stroke-dasharray": unit * 5 + " " + unit * 3 }));
      const label = svgNode("text", { x: zone.polygon[0][0] + unit * 3, y: zone.polygon[0][1] + unit * 9, class: "zone-label",
        "font-size": unit * 9 });
      label.textContent = zone.name || zone.id;
      svg.append(label);
    }
    const pts = state.inst.points;
    if (pts.length >= 3) svg.append(svgNode("polygon", { points: pointsAttr(pts), class: "new-fill" }));
    if (pts.length >= 2) svg.append(svgNode(pts.length >= 3 ? "polygon" : "polyline",
      { points: pointsAttr(pts), class: "new-line", "stroke-width": unit * 2 }));
    pts.forEach((p, i) => {
      svg.append(svgNode("circle", { cx: p[0], cy: p[1], r: unit * 4, class: i === 0 ? "vertex first" : "vertex",
        "stroke-width": unit }));
      const num = svgNode("text", { x: p[0] + unit * 6, y: p[1] - unit * 5, class: "vertex-num", "font-size": unit * 9 });
      num.textContent = String(i + 1);
      svg.append(num);
    });
    renderYaml();
  }

  function toConfigUnits(cam, p) {
    const [w, h] = cam.frame_size;
    if (cam.coordinates === "normalized") return [+(p[0] / w).toFixed(4), +(p[1] / h).toFixed(4)];
    if (cam.resolution) return [Math.round(p[0] * cam.resolution[0] / w), Math.round(p[1] * cam.resolution[1] / h)];
    return [Math.round(p[0]), Math.round(p[1])];
  }

  function renderYaml() {
    const cam = instCamera();
    const pts = state.inst.points;
    const id = ($("#inst-id").value || "").trim();
    const name = ($("#inst-name").value || "").trim();
    const idOk = IDENT.test(id);
    $("#inst-error").hidden = idOk || !id;
    $("#inst-error").textContent = t("inst.badId");
    $("#inst-points").textContent = t("inst.points", { n: pts.length }) +
      (pts.length < 3 ? " · " + t("inst.needMore", { n: 3 - pts.length }) : "");
    $("#inst-undo").disabled = pts.length === 0;
    $("#inst-clear").disabled = pts.length === 0;
    if (!cam || !cam.frame_size) { $("#inst-yaml").textContent = ""; $("#inst-units").textContent = ""; return; }
    const [w, h] = cam.frame_size;
    const basis = cam.resolution || cam.frame_size;
    const units = cam.coordinates === "normalized" ? t("inst.unitsNormalized")
      : t("inst.unitsPixels", { w: basis[0], h: basis[1] });
    $("#inst-units").textContent = units;
    const lines = [];
    lines.push("# " + t("inst.yamlCamera") + " " + cam.id + (cam.name ? " (" + cam.name + ")" : "") + " · " + t("inst.yamlUnits") + ": " +
      (cam.coordinates === "normalized" ? "0–1" : basis[0] + "×" + basis[1]));
    if (cam.coordinates !== "normalized" && !cam.resolution) {
      lines.push("# " + t("inst.addResolution") + ":");
      lines.push("resolution: [" + w + ", " + h + "]");
    }
    lines.push("zones:");
    lines.push("  - id: " + (idOk ? id : "zone-1"));
    if (name) lines.push("    name: " + JSON.stringify(name));
    const coords = pts.map((p) => toConfigUnits(cam, p)).map((p) => "[" + p[0] + ", " + p[1] + "]");
    lines.push("    polygon: [" + coords.join(", ") + "]");
    $("#inst-yaml").textContent = lines.join("\n");
    $("#inst-copy").disabled = pts.length < 3 || !idOk;
  }

  function bindInstaller() {
    $("#inst-camera").addEventListener("change", (e) => {
      state.inst.camera = e.target.value;
      state.inst.points = [];
      loadInstallerImage();
      renderInstaller();
    });
    const stage = $("#inst-stage");
    const toFrame = (e) => {
      const cam = instCamera();
      const img = $("#inst-img");
      if (!cam || !cam.frame_size || img.hidden) return null;
      const rect = img.getBoundingClientRect();
      const x = (e.clientX - rect.left) / rect.width;
      const y = (e.clientY - rect.top) / rect.height;
      if (x < 0 || y < 0 || x > 1 || y > 1) return null;
      return [Math.round(x * cam.frame_size[0]), Math.round(y * cam.frame_size[1])];
    };
    stage.addEventListener("click", (e) => {
      const p = toFrame(e);
      if (!p) return;
      state.inst.points.push(p);
      renderInstaller();
    });
    stage.addEventListener("mousemove", (e) => {
      const p = toFrame(e);
      const cam = instCamera();
      $("#inst-cursor").textContent = p && cam ? "x " + toConfigUnits(cam, p)[0] + "  y " + toConfigUnits(cam, p)[1] : "";
    });
    stage.addEventListener("mouseleave", () => { $("#inst-cursor").textContent = ""; });
    $("#inst-undo").addEventListener("click", () => { state.inst.points.pop(); renderInstaller(); });
    $("#inst-clear").addEventListener("click", () => { state.inst.points = []; renderInstaller(); });
    $("#inst-id").addEventListener("input", renderYaml);
    $("#inst-name").addEventListener("input", renderYaml);
    document.addEventListener("keydown", (e) => {
      if (state.tab === "installer" && (e.ctrlKey || e.metaKey) && e.key === "z") {
        e.preventDefault();
        state.inst.points.pop();
        renderInstaller();
      }
    });
    $("#inst-copy").addEventListener("click", copyYaml);
    $("#inst-img").addEventListener("load", () => { $("#inst-img").hidden = false; });
  }

  async function copyYaml() {
    const text = $("#inst-yaml").textContent;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        const area = el("textarea");
        area.value = text;
        area.className = "offscreen";
        document.body.append(area);
        area.select();
        const ok = document.execCommand("copy");
        area.remove();
        if (!ok) throw new Error("copy refused");
      }
      toast(t("inst.copied"));
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($("#inst-yaml"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      toast(t("inst.copyFailed"), true);
    }
  }

  // ------------------------------------------------------------------ tabs and timers

  function showTab(name) {
    state.tab = name;
    $$(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
    $$(".view").forEach((v) => v.classList.toggle("active", v.id === "view-" + name));
    if (name === "cameras") renderWall();
    if (name === "installer") { fillInstallerCameras(); loadInstallerImage(); }
    if (name === "alerts") { state.fresh.clear(); $$(".alert.fresh").forEach((c) => c.classList.remove("fresh")); }
  }

  let gatewayOffsetMin = null;   // the gateway's UTC offset, so the clock matches the alert times
  function setGatewayClock(iso) {
    const m = /([+-])(\d\d):(\d\d)$/.exec(iso || "");
    gatewayOffsetMin = m ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : (/Z$/.test(iso || "") ? 0 : null);
    serverToday = todayOf(iso);
  }
  function tick() {
    const now = new Date();
    if (gatewayOffsetMin === null) {
      $("#clock").textContent = now.toLocaleTimeString("en-GB", { hour12: false });
      return;
    }
    const local = new Date(now.getTime() + gatewayOffsetMin * 60000);
    const pad = (n) => String(n).padStart(2, "0");
    $("#clock").textContent = pad(local.getUTCHours()) + ":" + pad(local.getUTCMinutes()) + ":" + pad(local.getUTCSeconds());
    const today = local.getUTCFullYear() + "-" + pad(local.getUTCMonth() + 1) + "-" + pad(local.getUTCDate());
    if (serverToday && today !== serverToday) { serverToday = today; refreshStats(); }
  }

  function startTimers() {
    setInterval(tick, 1000);
    setInterval(() => { if (!document.hidden) loadCameras(); }, 3000);
    setInterval(() => {
      if (document.hidden || state.tab !== "installer" || !$("#inst-live").checked) return;
      loadInstallerImage();
    }, 2000);
    setInterval(() => {  // refresh relative times
      for (const card of $$("#alert-list .alert")) {
        const ev = state.events.get(card.dataset.id);
        if (ev) renderAlert(ev, card);
      }
    }, 30000);
    setInterval(refreshStats, 60000);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    applyI18n();
    $$(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
    $("#lang").addEventListener("click", () => {
      state.lang = state.lang === "en" ? "zh" : "en";
      store.set("lang", state.lang);
      applyI18n();
      setLive($("#live").dataset.state);
      for (const ev of state.events.values()) {
        const card = $('[data-id="' + ev.event_id + '"]');
        if (card) renderAlert(ev, card);
      }
      renderListFooter();
      if (state.tab === "cameras") renderWall();
      if (state.tab === "installer") fillInstallerCameras();
      tick();
    });
    const name = $("#officer");
    name.value = store.get("officer", "");
    name.addEventListener("change", () => store.set("officer", name.value.trim()));
    const sound = $("#sound");
    const showSound = () => { sound.setAttribute("aria-pressed", state.sound ? "true" : "false"); sound.classList.toggle("on", state.sound); };
    showSound();
    sound.addEventListener("click", () => { state.sound = !state.sound; store.set("sound", state.sound ? "1" : "0"); showSound(); if (state.sound) beep(1); });
    bindFilters();
    bindLightbox();
    bindInstaller();
    tick();
    try {
      const info = await api("/api/info");
      $("#gw-name").textContent = info.gateway_name || info.gateway_id;
      setGatewayClock(info.time);
      state.rev = info.rev;
      state.types = info.alert_types || {};
      fillTypeFilter();
      $("#logout").hidden = !info.auth;
    } catch (e) { return; }
    if (window.location.hash === "#token-in-history") {   // opened through a ?token= kiosk link
      history.replaceState(null, "", "/");
      toast(t("kiosk.tokenInHistory"), true, 20000);
    }
    await loadCameras();
    try { await loadEvents(false); } catch (e) { toast(e.message, true); }
    connect();
    refreshStats();
    startTimers();
  }

  // the page's other tools (counting.js) use the same texts, requests and messages
  window.GW = { t, api, toast, el, svgNode, cameras: () => state.cameras, tab: () => state.tab };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
