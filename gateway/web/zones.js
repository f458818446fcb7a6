/* 安装调试 · 划定区域 (draw zone): the installer clicks a zone's corners on a camera's live
 * picture, sees the configured zones and privacy masks, and copies the YAML `zones:` snippet in
 * the units that camera's configuration uses. Uses the page's core (window.GW, core.js). */
"use strict";

(function () {
  const GW = window.GW;
  const { $, el, t } = GW;
  const IDENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

  const state = { camera: "", points: [] };

  function fillInstallerCameras() {
    const select = $("#inst-camera");
    const usable = GW.state.cameras.filter((c) => c.frame_size);
    const wanted = state.camera || select.value || (usable[0] && usable[0].id) || "";
    const signature = usable.map((c) => c.id + ":" + c.name).join("|");
    if (select.dataset.signature !== signature || select.dataset.lang !== GW.state.lang) {
      select.textContent = "";
      for (const cam of usable) select.append(new Option((cam.name || cam.id) + " (" + cam.id + ")", cam.id));
      if (!usable.length) select.append(new Option(t("inst.noCameras"), ""));
      select.dataset.signature = signature;
      select.dataset.lang = GW.state.lang;
    }
    if (wanted && usable.some((c) => c.id === wanted)) select.value = wanted;
    if (select.value !== state.camera) {
      state.camera = select.value;
      state.points = [];
      loadInstallerImage();
    }
    renderInstaller();
  }
  function instCamera() {
    return GW.state.cameras.find((c) => c.id === state.camera);
  }
  /* A fresh picture, only while the tool is on screen (a hidden tool costs no traffic). */
  function loadInstallerImage() {
    const cam = instCamera();
    const img = $("#inst-img");
    $("#inst-empty").hidden = !!(cam && cam.frame_size);
    if (!cam || !cam.frame_size) { img.hidden = true; return; }
    if (GW.toolOnScreen("zone")) GW.refreshImage(img, cam.snapshot_url);
  }
  function pointsAttr(points) { return points.map((p) => p[0] + "," + p[1]).join(" "); }

  function renderInstaller() {
    const cam = instCamera();
    const svg = $("#inst-svg");
    const svgNode = GW.svgNode;
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
    const pts = state.points;
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
    const pts = state.points;
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
      state.camera = e.target.value;
      state.points = [];
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
      state.points.push(p);
      renderInstaller();
    });
    stage.addEventListener("mousemove", (e) => {
      const p = toFrame(e);
      const cam = instCamera();
      $("#inst-cursor").textContent = p && cam ? "x " + toConfigUnits(cam, p)[0] + "  y " + toConfigUnits(cam, p)[1] : "";
    });
    stage.addEventListener("mouseleave", () => { $("#inst-cursor").textContent = ""; });
    $("#inst-undo").addEventListener("click", () => { state.points.pop(); renderInstaller(); });
    $("#inst-clear").addEventListener("click", () => { state.points = []; renderInstaller(); });
    $("#inst-id").addEventListener("input", renderYaml);
    $("#inst-name").addEventListener("input", renderYaml);
    document.addEventListener("keydown", (e) => {
      if (GW.toolOnScreen("zone") && GW.keyForPage(e) && (e.ctrlKey || e.metaKey) && !e.shiftKey && e.key === "z") {
        e.preventDefault();
        state.points.pop();
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
      GW.toast(t("inst.copied"));
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($("#inst-yaml"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      GW.toast(t("inst.copyFailed"), true);
    }
  }

  GW.on("lang", () => { if (GW.state.tab === "installer") fillInstallerCameras(); });
  GW.on("cameras", () => { if (GW.state.tab === "installer") fillInstallerCameras(); });
  GW.on("tab", (name) => { if (name === "installer") { fillInstallerCameras(); loadInstallerImage(); } });
  GW.on("tool", (tool) => { if (tool === "zone") loadInstallerImage(); });

  GW.zones = {
    bind: bindInstaller,
    /* Open the tool on this camera (the camera wall's 划定区域 button). */
    choose(cameraId) { state.camera = cameraId; },
    /* The timer's tick: a fresh picture while the tool is on screen and 画面自动刷新 is on. */
    refresh() {
      if (GW.toolOnScreen("zone") && $("#inst-live").checked) loadInstallerImage();
    },
  };
})();
