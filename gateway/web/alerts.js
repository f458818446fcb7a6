/* 告警 (alerts): the live alert list (server-sent events), its counters, title and sound, the
 * filters and the picture lightbox. The list shows small thumbnails (?size=thumb); the lightbox
 * the evidence picture as kept. 待确认 (pending) counts every unacknowledged alert, ended or not.
 * Acknowledging is ack.js's form, the centre's case steps cases.js's. Uses the page's core
 * (window.GW, core.js). Every text from the server goes in through textContent. */
"use strict";

(function () {
  const GW = window.GW;
  const { $, $$, el, t } = GW;
  const PAGE = 50;

  const state = {
    rev: 0,
    events: new Map(),      // event_id -> event (as shown)
    total: 0,
    offset: 0,
    filters: { camera: "", type: "", state: "", unacked: false },
    es: null,
    sound: GW.store.get("sound", "0") === "1",
    fresh: new Set(),       // ids that arrived live and are not yet seen/acked
    types: {},              // alert type -> {zh, en}, from /api/info (the gateway's one vocabulary)
    unacked: 0,
  };

  function typeName(type) {
    const labels = state.types[type];
    return (labels && (labels[GW.state.lang] || labels.zh)) || type;
  }
  function titleOf(ev) {
    if (GW.state.lang === "zh" && ev.title_zh) return ev.title_zh;
    const place = ev.zone_name || ev.camera_name || ev.camera_id || "";
    let title = typeName(ev.type) + (place ? ": " + place : "");
    const n = ev.state === "end" ? ev.peak_count : ev.count;
    if (n !== null && n !== undefined) title += " · " + t("alert.people", { n: n });
    return title;
  }

  // ------------------------------------------------------------------ list

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
    const page = await GW.api("/api/events?" + query({ limit: PAGE, offset: offset }));
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
                  el("div", "meta case-status"), el("ol", "case-steps"));
      const actions = el("div", "actions");
      const ack = el("button", "btn ack-btn");
      ack.type = "button";
      ack.addEventListener("click", () => acknowledge(card.dataset.id));
      const acked = el("div", "acked");
      const clip = el("button", "clip-btn");
      clip.type = "button";
      clip.addEventListener("click", () => openClip(state.events.get(card.dataset.id)));
      actions.append(clip, el("span", "clip-none"), ack, acked);
      card.append(el("div", "bar"), thumb, body, actions);
    }
    card.className = "alert sev-" + Math.min(4, Math.max(1, ev.severity || 2)) + (ev.active ? " active" : " ended") +
      (ev.ack ? " is-acked" : " unacked") + (card.classList.contains("arrived") ? " arrived" : "");
    card.dataset.rev = ev.rev;

    const img = $(".thumb img", card);
    const url = ev.peak_snapshot_url || ev.snapshot_url;
    const empty = $(".thumb-empty", card);
    if (url) {
      const thumb = url + (url.includes("?") ? "&" : "?") + "size=thumb";
      if (img.dataset.src !== thumb) { img.src = thumb; img.dataset.src = thumb; }
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
      count.append(document.createTextNode(" " + (GW.state.lang === "en" ? "people" : "人")));
      if (ev.active && ev.peak_count !== null && ev.peak_count > ev.count) {
        count.append(el("small", "", " (" + t("alert.peak") + " " + ev.peak_count + ")"));
      }
      when.append(count);
    }
    const time = el("span", "time");
    time.append(el("b", "", GW.shortTime(ev.started_at)));
    time.append(el("small", "ago", " " + GW.ago(ev.started_at)));
    time.title = ev.started_at;
    when.append(time);
    if (ev.ended_at) when.append(el("span", "dur", t("alert.duration", { d: GW.duration(ev.started_at, ev.ended_at) })));
    GW.cases.render(ev, card);
    renderClip(ev, card);

    const ackBtn = $(".ack-btn", card);
    const acked = $(".acked", card);
    if (ev.ack) {
      ackBtn.hidden = true;
      acked.hidden = false;
      acked.textContent = "";
      acked.append(el("span", "ok", "✓ " + t("alert.acked")));
      acked.append(el("span", "who", ev.ack.by));
      acked.append(el("span", "at", GW.shortTime(ev.ack.at)));
      if (ev.ack.case_id) acked.append(el("span", "case", t("alert.case", { id: ev.ack.case_id })));
      if (ev.ack.note) acked.append(el("span", "note", ev.ack.note));
    } else {
      ackBtn.hidden = false;
      acked.hidden = true;
      ackBtn.textContent = t("alert.ack");
    }
    return card;
  }
  /* The event's video clip: a button while it can be played (or is still being recorded), a
     muted "no video" with the reason when the camera's video could not become a clip. */
  function renderClip(ev, card) {
    const button = $(".clip-btn", card);
    const none = $(".clip-none", card);
    const clip = ev.clip;
    button.hidden = !clip || clip.status === "failed";
    none.hidden = !clip || clip.status !== "failed";
    if (!clip) return;
    none.textContent = t("alert.clipFailed");
    none.title = clip.reason || "";
    button.disabled = clip.status === "recording";
    button.textContent = t(clip.status === "recording" ? "alert.clipRecording"
      : clip.status === "partial" ? "alert.clipPartial" : "alert.clip");
    button.title = clip.reason || "";
  }
  function renderAll() {
    for (const card of $$("#alert-list .alert")) {
      const ev = state.events.get(card.dataset.id);
      if (ev) renderAlert(ev, card);
    }
  }

  function acknowledge(id) {
    const ev = state.events.get(id);
    if (!ev) return;
    GW.ack.open(ev, titleOf(ev), (result) => {
      state.fresh.delete(id);
      if (result.event) upsert(result.event, false);
      GW.toast(t("ack.done", { title: result.event ? titleOf(result.event) : id }));
      refreshStats();
    });
  }

  // ------------------------------------------------------------------ live stream

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
          try { await GW.api("/api/info"); connect(); } catch (e) { retryTimer = setTimeout(connect, 5000); }
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
      const info = await GW.api("/api/info");
      GW.setGatewayClock(info.time);
      const since = info.time.slice(0, 10) + "T00:00:00" + info.time.slice(19);
      const [active, unacked, today] = await Promise.all([
        GW.api("/api/events?state=active&limit=1"),
        GW.api("/api/events?acked=false&limit=1"),
        GW.api("/api/events?limit=1&since=" + encodeURIComponent(since)),
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
  function bindSound() {
    const sound = $("#sound");
    const showSound = () => { sound.setAttribute("aria-pressed", state.sound ? "true" : "false"); sound.classList.toggle("on", state.sound); };
    showSound();
    sound.addEventListener("click", () => { state.sound = !state.sound; GW.store.set("sound", state.sound ? "1" : "0"); showSound(); if (state.sound) beep(1); });
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
    for (const cam of GW.state.cameras) select.append(new Option(cam.name || cam.id, cam.id));
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
    $("#more").addEventListener("click", () => loadEvents(true).catch((e) => GW.toast(e.message, true)));
  }
  function reload() {
    loadEvents(false).catch((e) => GW.toast(e.message, true));
  }

  // ------------------------------------------------------------------ lightbox

  function caption(ev) {
    return titleOf(ev) + " · " + (ev.camera_name || ev.camera_id) + " · " + GW.shortTime(ev.started_at);
  }
  function openLightbox(ev) {
    if (!ev) return;
    const url = ev.peak_snapshot_url || ev.snapshot_url;
    if (!url) return;
    showInLightbox("img", url, caption(ev));
  }
  /* The clip plays in the same overlay as the picture; the browser fetches it by ranges. */
  function openClip(ev) {
    if (!ev || !ev.clip || !ev.clip.url || ev.clip.status === "recording") return;
    showInLightbox("video", ev.clip.url, caption(ev) + (ev.clip.reason ? " · " + ev.clip.reason : ""));
    $("#lightbox-video").play().catch(() => {});  // autoplay may be refused: the controls remain
  }
  function showInLightbox(kind, url, text) {
    const img = $("#lightbox-img");
    const video = $("#lightbox-video");
    img.hidden = kind !== "img";
    video.hidden = kind !== "video";
    if (kind === "img") img.src = url; else video.src = url;
    $("#lightbox-caption").textContent = text;
    $("#lightbox").hidden = false;
  }
  function closeLightbox() {
    const video = $("#lightbox-video");
    video.pause();
    video.removeAttribute("src");
    video.load();  // stop fetching the clip
    $("#lightbox").hidden = true;
  }
  function bindLightbox() {
    $("#lightbox").addEventListener("click", closeLightbox);
    $("#lightbox-video").addEventListener("click", (e) => e.stopPropagation());  // its controls, not a close
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("#lightbox").hidden) closeLightbox(); });
  }

  // ------------------------------------------------------------------ wiring

  GW.on("lang", () => {
    fillTypeFilter();
    fillCameraFilter();
    updateTitle();
    setLive($("#live").dataset.state);
    renderAll();
    renderListFooter();
  });
  GW.on("cameras", fillCameraFilter);
  GW.on("tab", (name) => {
    if (name === "alerts") { state.fresh.clear(); $$(".alert.fresh").forEach((c) => c.classList.remove("fresh")); }
  });

  GW.alerts = {
    bind() {
      bindSound();
      fillTypeFilter();
      fillCameraFilter();
      updateTitle();
      bindFilters();
      bindLightbox();
    },
    /* Begin with what /api/info said: the revision to stream after, the alert vocabulary. */
    info(info) {
      state.rev = info.rev;
      state.types = info.alert_types || {};
      fillTypeFilter();
    },
    async start() {
      try { await loadEvents(false); } catch (e) { GW.toast(e.message, true); }
      connect();
      refreshStats();
    },
    refreshStats,
    renderAll,
  };
})();
