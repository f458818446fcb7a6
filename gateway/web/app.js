/* Duty-officer page: the tabs and the installer's tools, the timers and the start. The parts
 * live in their own files and share the page's small core through window.GW (core.js):
 * alerts.js (告警) with ack.js (确认) and cases.js (工单), cameras.js (摄像机), zones.js
 * (划定区域) and counting.js (标注人数). Plain JS, no build step, no external resources.
 * Auth rides on the HttpOnly session cookie. */
"use strict";

(function () {
  const GW = window.GW;
  const { $, $$, t } = GW;

  function showTab(name) {
    GW.state.tab = name;
    $$(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
    $$(".view").forEach((v) => v.classList.toggle("active", v.id === "view-" + name));
    GW.emit("tab", name);
  }

  function showTool(tool) {
    GW.state.tool = tool;
    $$("#inst-tool button").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
    $$(".zone-only").forEach((node) => { node.hidden = tool !== "zone"; });
    $$(".count-only").forEach((node) => { node.hidden = tool !== "count"; });
    GW.emit("tool", tool);
  }

  function tick() {
    const clock = GW.gatewayClock();
    $("#clock").textContent = clock.text;
    if (clock.newDay) GW.alerts.refreshStats();
  }

  function startTimers() {
    setInterval(tick, 1000);
    setInterval(() => { if (!document.hidden) GW.wall.load(); }, 3000);
    setInterval(GW.zones.refresh, 2000);
    setInterval(GW.alerts.renderAll, 30000);  // refresh relative times
    setInterval(GW.alerts.refreshStats, 60000);
  }

  function switchLanguage() {
    GW.state.lang = GW.state.lang === "en" ? "zh" : "en";
    GW.store.set("lang", GW.state.lang);
    GW.applyI18n();
    GW.emit("lang");
    tick();
  }

  async function start() {
    GW.applyI18n();
    $$(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
    $$("#inst-tool button").forEach((b) => b.addEventListener("click", () => showTool(b.dataset.tool)));
    $("#lang").addEventListener("click", switchLanguage);
    GW.ack.bind();
    GW.alerts.bind();
    GW.zones.bind();
    tick();
    try {
      const info = await GW.api("/api/info");
      $("#gw-name").textContent = info.gateway_name || info.gateway_id;
      GW.setGatewayClock(info.time);
      GW.alerts.info(info);
      $("#logout").hidden = !info.auth;
    } catch (e) { return; }
    if (window.location.hash === "#token-in-history") {   // opened through a ?token= kiosk link
      history.replaceState(null, "", "/");
      GW.toast(t("kiosk.tokenInHistory"), true, 20000);
    }
    await GW.wall.load();
    await GW.alerts.start();
    startTimers();
  }

  GW.showTab = showTab;

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
