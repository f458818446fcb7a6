/* Installer view, 标注人数 (annotate people): snapshots of a camera, a mark on every head, and a
 * counting model fitted from them (gateway/api/routes/counting.py). Uses the page's core
 * (window.GW, core.js); app.js shows and hides the tool. Every text from the server goes in
 * through textContent (never innerHTML).
 *
 * The marks keep a history of what the installer did (add, remove, clear), so 撤销/重做 (undo,
 * redo; Ctrl+Z, Ctrl+Shift+Z or Ctrl+Y while this tool is on screen) restore exactly the marks
 * that were there. At 1x the picture fits the visible part of the window; 2x and 4x zoom in. */
"use strict";

(function () {
  const GW = window.GW;
  const { $, $$, t } = GW;
  const REMOVE_PX = 6;      // a click this close (screen pixels) to a mark removes it (zoom in for tight crowds)
  const POLL_MS = 2000;
  const FIT_MARGIN_PX = 16; // room below the picture at 1x
  const MIN_STAGE_PX = 200;
  const GOOD_ERROR = 0.10;  // cross-validated error within 10 % of the scene's typical count: good
  const FAIR_ERROR = 0.20;

  const state = {
    camera: "",
    status: null,
    statusAt: 0,            // Date.now() when the status arrived (the warm-up countdown runs from it)
    warmupTotal: 0,         // the longest warm-up seen for this camera (the progress bar's length)
    current: null,          // the snapshot being annotated: {id, width, height, detected, points}
    points: [],
    done: [],               // what the installer did to the marks, oldest first (undo takes the last)
    undone: [],             // what undo took back (redo puts it back); a new action forgets it
    dirty: false,
    zoom: 1,
    fit: null,              // the last fit's answer
    modelBefore: null,      // fitted_at of the model the camera counted with when we fitted
    busy: false,
  };

  function base() { return "/api/cameras/" + encodeURIComponent(state.camera) + "/counting"; }

  async function call(path, method, body) {
    const options = { method: method || "GET", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return GW.api(base() + path, options);
  }

  function fail(error) { GW.toast(t("count.failed", { msg: error.message }), true, 6000); }

  function setStatus(status) {
    state.status = status;
    state.statusAt = Date.now();
    if (status && status.warmup_left_s > state.warmupTotal) state.warmupTotal = status.warmup_left_s;
  }

  // ------------------------------------------------------------------ camera and polling

  async function selectCamera(cameraId, force) {
    if (!cameraId || (cameraId === state.camera && !force)) return;
    if (cameraId !== state.camera) {
      state.camera = cameraId;
      state.current = null;
      state.points = [];
      forgetHistory();
      state.dirty = false;
      state.fit = null;
      state.warmupTotal = 0;
    }
    try { setStatus(await call("/start", "POST")); } catch (e) { fail(e); }
    render();
  }

  async function poll() {
    if (!GW.toolOnScreen("count")) return;
    const chosen = $("#inst-camera").value;   // the list may fill after the tool was opened
    if (chosen && chosen !== state.camera) { await selectCamera(chosen); return; }
    if (!state.camera) return;
    try { setStatus(await call("")); } catch (e) { return; }
    renderStatus();
    renderShots();
    renderButtons();   // the background may just have warmed up: snapshots allowed now
  }

  // ------------------------------------------------------------------ snapshots

  async function takeSnapshot() {
    if (state.dirty && !window.confirm(t("count.unsaved"))) return;
    state.busy = true;
    renderButtons();
    try {
      const shot = await call("/snapshots", "POST");
      setStatus(await call(""));
      open(shot);
    } catch (e) { fail(e); }
    state.busy = false;
    render();
  }

  function open(shot) {
    state.current = shot;
    state.points = (shot.points || []).map((p) => [p[0], p[1]]);
    forgetHistory();
    state.dirty = false;
    const img = $("#count-img");
    img.hidden = true;
    img.onload = () => { img.hidden = false; renderMarks(); };
    img.src = base() + "/snapshots/" + encodeURIComponent(shot.id) + "/image.jpg";
    render();
  }

  async function save() {
    if (!state.current) return;
    try {
      const shot = await call("/snapshots/" + encodeURIComponent(state.current.id) + "/points", "PUT",
        { points: state.points });
      state.current = shot;
      state.dirty = false;
      setStatus(await call(""));
      GW.toast(t("count.saved", { n: shot.points.length }));
    } catch (e) { fail(e); }
    render();
  }

  async function remove() {
    if (!state.current) return;
    try {
      await call("/snapshots/" + encodeURIComponent(state.current.id), "DELETE");
      state.current = null;
      state.points = [];
      forgetHistory();
      state.dirty = false;
      $("#count-img").hidden = true;
      setStatus(await call(""));
      GW.toast(t("count.deleted"));
    } catch (e) { fail(e); }
    render();
  }

  async function fit() {
    state.busy = true;
    renderButtons();
    $("#count-fit").textContent = t("count.fitting");
    state.modelBefore = state.status && state.status.model ? state.status.model.fitted_at : null;
    try {
      state.fit = await call("/fit", "POST");
      setStatus(await call(""));
      GW.toast(t("count.fitted"));
    } catch (e) { fail(e); }
    state.busy = false;
    render();
  }

  // ------------------------------------------------------------------ marking, with undo and redo

  /* Each action says how to do and undo itself on state.points. */
  function apply(action) {
    if (action.kind === "add") state.points.splice(action.index, 0, action.point);
    else if (action.kind === "remove") state.points.splice(action.index, 1);
    else state.points = [];
  }
  function revert(action) {
    if (action.kind === "add") state.points.splice(action.index, 1);
    else if (action.kind === "remove") state.points.splice(action.index, 0, action.point);
    else state.points = action.points.map((p) => [p[0], p[1]]);
  }
  function act(action) {
    apply(action);
    state.done.push(action);
    state.undone = [];
    marksChanged();
  }
  function undo() {
    const action = state.done.pop();
    if (!action) return;
    revert(action);
    state.undone.push(action);
    marksChanged();
  }
  function redo() {
    const action = state.undone.pop();
    if (!action) return;
    apply(action);
    state.done.push(action);
    marksChanged();
  }
  function forgetHistory() { state.done = []; state.undone = []; }
  function marksChanged() {
    state.dirty = true;
    renderMarks();
    renderShots();
    renderButtons();
  }

  function toFrame(event) {
    const img = $("#count-img");
    if (!state.current || img.hidden) return null;
    const rect = img.getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    if (x < 0 || y < 0 || x > 1 || y > 1) return null;
    return { p: [+(x * state.current.width).toFixed(1), +(y * state.current.height).toFixed(1)],
      perPixel: state.current.width / rect.width };
  }

  function mark(event) {
    const hit = toFrame(event);
    if (!hit) return;
    const reach = REMOVE_PX * hit.perPixel;
    const near = state.points.findIndex((q) => Math.hypot(q[0] - hit.p[0], q[1] - hit.p[1]) <= reach);
    if (near >= 0) act({ kind: "remove", index: near, point: state.points[near] });
    else act({ kind: "add", index: state.points.length, point: hit.p });
  }

  function onKey(event) {
    if (!GW.toolOnScreen("count") || !GW.keyForPage(event) || !(event.ctrlKey || event.metaKey)) return;
    const key = event.key.toLowerCase();
    if (key === "z" && !event.shiftKey) { event.preventDefault(); undo(); }
    else if ((key === "z" && event.shiftKey) || key === "y") { event.preventDefault(); redo(); }
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    renderStatus();
    renderShots();
    renderMarks();
    renderButtons();
    renderResult();
  }

  function warmupLeft() {
    const status = state.status;
    if (!status || !status.running || !(status.warmup_left_s > 0)) return 0;
    return Math.max(0, status.warmup_left_s - (Date.now() - state.statusAt) / 1000);
  }

  function renderStatus() {
    const status = state.status;
    const lines = [];
    if (!status || !status.running) lines.push(t("count.starting"));
    else if (status.warmup_left_s > 0) lines.push(t("count.warmingShort"));
    else lines.push(t("count.ready"));
    const model = status && status.model && status.model.cross_validation ? status.model : null;
    const taken = !state.fit || (model && model.fitted_at !== state.modelBefore);
    if (model && taken) {
      lines.push(t("count.model", { n: model.frames, mae: Number(model.cross_validation.mae).toFixed(2),
        mode: status.active_mode }));
    } else if (state.fit) {   // fitted here; the camera takes it with its next analysed frame
      lines.push(t("count.modelPending", { n: state.fit.frames, mae: state.fit.cross_validation.mae.toFixed(2),
        mode: state.fit.active_mode }));
    } else if (status) {
      lines.push(t("count.noModel"));
    }
    if (status && status.detected !== null && status.estimated !== null) {
      lines.push(t("count.live", { d: status.detected, e: Math.round(status.estimated) }));
    }
    const box = $("#count-status");
    box.textContent = "";
    lines.forEach((line, i) => { if (i) box.append(document.createElement("br")); box.append(line); });
    box.dataset.ready = status && status.running && status.warmup_left_s === 0 ? "1" : "0";
    renderWarmup();
  }

  /* While the background learns the empty scene: a progress bar and a countdown, every second. */
  function renderWarmup() {
    const left = warmupLeft();
    const warming = !!(state.status && state.status.running && state.status.warmup_left_s > 0);
    $("#count-warmup").hidden = !warming;
    if (!warming) return;
    const total = Math.max(state.warmupTotal, 1);
    const bar = $("#count-warmup-bar");
    bar.max = total;
    bar.value = Math.min(total, total - left);
    $("#count-warmup-text").textContent = t("count.warming", { s: Math.ceil(left) });
  }

  function renderShots() {
    const box = $("#count-shots");
    box.textContent = "";
    const shots = (state.status && state.status.snapshots) || [];
    shots.forEach((shot, i) => {
      const current = state.current && state.current.id === shot.id;
      const done = shot.points !== null;
      const label = current && state.dirty ? t("count.shotUnsaved", { i: i + 1, n: state.points.length })
        : done ? t("count.shot", { i: i + 1, n: shot.points.length }) : t("count.shotNew", { i: i + 1 });
      const button = GW.el("button", (done ? "done" : "") + (current ? " on" : "") + (current && state.dirty ? " dirty" : ""),
        label);
      button.type = "button";
      button.dataset.id = shot.id;
      button.addEventListener("click", () => {
        if (state.dirty && !window.confirm(t("count.unsaved"))) return;
        open(shot);
      });
      box.append(button);
    });
    const annotated = shots.filter((s) => s.points !== null).length;
    const needed = (state.status && state.status.min_frames) || 5;
    $("#count-need").textContent = annotated >= needed ? t("count.enough", { n: annotated })
      : t("count.need", { n: annotated, m: needed });
    $("#count-need").dataset.annotated = String(annotated);
  }

  /* At 1x the whole picture fits the window below the scroll box's top; 2x and 4x zoom in. */
  function fitStage(shot) {
    const scroll = $("#count-scroll");
    const top = scroll.getBoundingClientRect().top + window.scrollY;
    const room = Math.max(MIN_STAGE_PX, window.innerHeight - top - FIT_MARGIN_PX);
    const width = Math.max(1, Math.min(scroll.clientWidth || shot.width, room * shot.width / shot.height));
    scroll.style.maxHeight = room + "px";
    $("#count-stage").style.width = Math.floor(width * state.zoom) + "px";
  }

  function renderMarks() {
    const svg = $("#count-svg");
    svg.textContent = "";
    const shot = state.current;
    $("#count-empty").hidden = !!shot;
    if (!shot) return;
    fitStage(shot);
    svg.setAttribute("viewBox", "0 0 " + shot.width + " " + shot.height);
    svg.setAttribute("preserveAspectRatio", "none");
    const img = $("#count-img");
    const shown = img.getBoundingClientRect().width || shot.width;
    const r = 4 * shot.width / shown;
    for (const p of state.points) {
      svg.append(GW.svgNode("circle", { cx: p[0], cy: p[1], r: r, class: "head", "stroke-width": r / 3 }));
    }
    $("#count-marked").textContent = t("count.marked", { n: state.points.length, d: shot.detected }) +
      (state.dirty ? " · " + t("count.unsaved") : "");
  }

  function renderButtons() {
    const status = state.status;
    const ready = !!(status && status.running && status.warmup_left_s === 0);
    const annotated = ((status && status.snapshots) || []).filter((s) => s.points !== null).length;
    $("#count-take").disabled = state.busy || !ready;
    $("#count-undo").disabled = !state.current || !state.done.length;
    $("#count-redo").disabled = !state.current || !state.undone.length;
    $("#count-clear").disabled = !state.current || !state.points.length;
    $("#count-save").disabled = !state.current || !state.dirty;
    $("#count-delete").disabled = !state.current;
    $("#count-delete").hidden = !state.current;
    $("#count-fit").disabled = state.busy || annotated < ((status && status.min_frames) || 5);
    if (!state.busy) $("#count-fit").textContent = t("count.fit");
    if (!state.current) $("#count-marked").textContent = "";
  }

  function renderResult() {
    const result = state.fit;
    $("#count-result").hidden = !result;
    if (!result) return;
    const cv = result.cross_validation;
    const typical = result.frames ? result.people / result.frames : 0;
    const verdict = cv.relative_error <= GOOD_ERROR ? "count.good" : cv.relative_error <= FAIR_ERROR ? "count.fair" : "count.poor";
    $("#count-cv").textContent = t("count.cv", { mae: cv.mae.toFixed(2), rel: (cv.relative_error * 100).toFixed(1),
      typical: typical.toFixed(1), frames: result.frames, people: result.people });
    $("#count-verdict").textContent = t(verdict);
    $("#count-verdict").dataset.verdict = verdict.slice(6);
    $("#count-compare").textContent = t("count.compare", { a: result.latest.annotated, d: result.latest.detected,
      e: Math.round(result.latest.estimated) });
    $("#count-yaml").textContent = result.yaml;
  }

  // ------------------------------------------------------------------ start

  function start() {
    GW.on("tool", (tool) => { if (tool === "count") selectCamera($("#inst-camera").value, true); });
    GW.on("lang", render);
    $("#inst-camera").addEventListener("change", (e) => { if (GW.state.tool === "count") selectCamera(e.target.value); });
    $("#count-stage").addEventListener("click", mark);
    $("#count-take").addEventListener("click", takeSnapshot);
    $("#count-save").addEventListener("click", save);
    $("#count-delete").addEventListener("click", remove);
    $("#count-fit").addEventListener("click", fit);
    $("#count-undo").addEventListener("click", undo);
    $("#count-redo").addEventListener("click", redo);
    $("#count-clear").addEventListener("click", () => act({ kind: "clear", points: state.points.map((p) => [p[0], p[1]]) }));
    $$("#count-zoom button").forEach((b) => b.addEventListener("click", () => {
      state.zoom = Number(b.dataset.zoom);
      $$("#count-zoom button").forEach((x) => x.classList.toggle("on", x === b));
      renderMarks();
    }));
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", renderMarks);
    setInterval(poll, POLL_MS);
    setInterval(() => { if (GW.toolOnScreen("count")) renderWarmup(); }, 1000);
    render();
  }

  start();
})();
