/* Installer view, 标注人数 (annotate people): snapshots of a camera, a mark on every head, and a
 * counting model fitted from them (gateway/api/routes/counting.py). Uses the page's texts,
 * requests and messages (window.GW from core.js). Every text from the server goes in through
 * textContent (never innerHTML). */
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  const REMOVE_PX = 6;      // a click this close (screen pixels) to a mark removes it (zoom in for tight crowds)
  const POLL_MS = 2000;

  const state = {
    tool: "zone",
    camera: "",
    status: null,
    current: null,          // the snapshot being annotated: {id, width, height, detected, points}
    points: [],
    dirty: false,
    zoom: 1,
    fit: null,              // the last fit's answer
    busy: false,
  };
  let GW = null;
  const t = (key, vars) => GW.t(key, vars);

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

  // ------------------------------------------------------------------ tool switch

  function showTool(tool) {
    state.tool = tool;
    $$("#inst-tool button").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
    $$(".zone-only").forEach((node) => { node.hidden = tool !== "zone"; });
    $$(".count-only").forEach((node) => { node.hidden = tool !== "count"; });
    if (tool === "count") selectCamera($("#inst-camera").value, true);
  }

  async function selectCamera(cameraId, force) {
    if (!cameraId || (cameraId === state.camera && !force)) return;
    if (cameraId !== state.camera) {
      state.camera = cameraId;
      state.current = null;
      state.points = [];
      state.dirty = false;
      state.fit = null;
    }
    try { state.status = await call("/start", "POST"); } catch (e) { fail(e); }
    render();
  }

  async function poll() {
    if (state.tool !== "count" || GW.tab() !== "installer" || document.hidden) return;
    const chosen = $("#inst-camera").value;   // the list may fill after the tool was opened
    if (chosen && chosen !== state.camera) { await selectCamera(chosen); return; }
    if (!state.camera) return;
    try { state.status = await call(""); } catch (e) { return; }
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
      state.status = await call("");
      open(shot);
    } catch (e) { fail(e); }
    state.busy = false;
    render();
  }

  function open(shot) {
    state.current = shot;
    state.points = (shot.points || []).map((p) => [p[0], p[1]]);
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
      state.status = await call("");
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
      state.dirty = false;
      $("#count-img").hidden = true;
      state.status = await call("");
      GW.toast(t("count.deleted"));
    } catch (e) { fail(e); }
    render();
  }

  async function fit() {
    state.busy = true;
    renderButtons();
    $("#count-fit").textContent = t("count.fitting");
    try {
      state.fit = await call("/fit", "POST");
      state.status = await call("");
      GW.toast(t("count.fitted"));
    } catch (e) { fail(e); }
    state.busy = false;
    render();
  }

  // ------------------------------------------------------------------ marking

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
    if (near >= 0) state.points.splice(near, 1);
    else state.points.push(hit.p);
    state.dirty = true;
    renderMarks();
    renderButtons();
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    renderStatus();
    renderShots();
    renderMarks();
    renderButtons();
    renderResult();
  }

  function renderStatus() {
    const status = state.status;
    const lines = [];
    if (!status || !status.running) lines.push(t("count.starting"));
    else if (status.warmup_left_s > 0) lines.push(t("count.warming", { s: Math.ceil(status.warmup_left_s) }));
    else lines.push(t("count.ready"));
    if (status && status.model && status.model.cross_validation) {
      lines.push(t("count.model", { n: status.model.frames, mae: Number(status.model.cross_validation.mae).toFixed(2),
        mode: status.active_mode }));
    } else if (status) {
      lines.push(t("count.noModel"));
    }
    if (status && status.detected !== null && status.estimated !== null) {
      lines.push(t("count.live", { d: status.detected, e: Math.round(status.estimated) }));
    }
    const box = $("#count-status");
    box.textContent = "";
    lines.forEach((line, i) => { if (i) box.append(document.createElement("br")); box.append(line); });
    $("#count-status").dataset.ready = status && status.running && status.warmup_left_s === 0 ? "1" : "0";
  }

  function renderShots() {
    const box = $("#count-shots");
    box.textContent = "";
    const shots = (state.status && state.status.snapshots) || [];
    shots.forEach((shot, i) => {
      const done = shot.points !== null;
      const label = done ? t("count.shot", { i: i + 1, n: shot.points.length }) : t("count.shotNew", { i: i + 1 });
      const button = GW.el("button", (done ? "done" : "") + (state.current && state.current.id === shot.id ? " on" : ""), label);
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

  function renderMarks() {
    const svg = $("#count-svg");
    svg.textContent = "";
    const shot = state.current;
    $("#count-empty").hidden = !!shot;
    $("#count-stage").style.width = (state.zoom * 100) + "%";
    if (!shot) return;
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
    $("#count-undo").disabled = !state.current || !state.points.length;
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
    $("#count-cv").textContent = t("count.cv", { mae: cv.mae.toFixed(2), rel: (cv.relative_error * 100).toFixed(1),
      folds: cv.folds, frames: result.frames, people: result.people });
    $("#count-compare").textContent = t("count.compare", { a: result.latest.annotated, d: result.latest.detected,
      e: Math.round(result.latest.estimated) });
    $("#count-yaml").textContent = result.yaml;
  }

  // ------------------------------------------------------------------ start

  function start() {
    GW = window.GW;
    if (!GW) return;
    $$("#inst-tool button").forEach((b) => b.addEventListener("click", () => showTool(b.dataset.tool)));
    $("#inst-camera").addEventListener("change", (e) => { if (state.tool === "count") selectCamera(e.target.value); });
    $("#count-stage").addEventListener("click", mark);
    $("#count-take").addEventListener("click", takeSnapshot);
    $("#count-save").addEventListener("click", save);
    $("#count-delete").addEventListener("click", remove);
    $("#count-fit").addEventListener("click", fit);
    $("#count-undo").addEventListener("click", () => { state.points.pop(); state.dirty = true; renderMarks(); renderButtons(); });
    $("#count-clear").addEventListener("click", () => { state.points = []; state.dirty = true; renderMarks(); renderButtons(); });
    $$("#count-zoom button").forEach((b) => b.addEventListener("click", () => {
      state.zoom = Number(b.dataset.zoom);
      $$("#count-zoom button").forEach((x) => x.classList.toggle("on", x === b));
      renderMarks();
    }));
    $("#lang").addEventListener("click", render);
    window.addEventListener("resize", renderMarks);
    setInterval(poll, POLL_MS);
    render();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
