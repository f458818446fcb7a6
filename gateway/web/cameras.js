/* 摄像机 (cameras): the camera list every part uses (reloaded by app.js's timer), the online
 * counter and offline badge, and the camera wall with each camera's live picture. Uses the
 * page's core (window.GW, core.js). Every text from the server goes in through textContent. */
"use strict";

(function () {
  const GW = window.GW;
  const { $, $$, el, t } = GW;

  async function loadCameras() {
    try {
      GW.state.cameras = await GW.api("/api/cameras");
    } catch (e) { return; }
    const cameras = GW.state.cameras;
    const online = cameras.filter((c) => c.state === "streaming").length;
    $("#stat-cameras").textContent = online + "/" + cameras.length;
    const down = cameras.length - online;
    $("#badge-offline").textContent = down;
    $("#badge-offline").hidden = down === 0;
    if (GW.state.tab === "cameras") renderWall();
    GW.emit("cameras");
  }

  function renderWall() {
    const wall = $("#wall");
    const seen = new Set();
    for (const cam of GW.state.cameras) {
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
        $(".draw", card).addEventListener("click", () => { GW.zones.choose(cam.id); GW.showTab("installer"); });
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
      if (cam.frame_size) GW.refreshImage($(".screen img", card), cam.snapshot_url);
      else $(".screen img", card).hidden = true;
    }
    for (const card of $$("[data-camera]", wall)) if (!seen.has(card.dataset.camera)) card.remove();
  }

  GW.on("lang", () => { if (GW.state.tab === "cameras") renderWall(); });
  GW.on("tab", (name) => { if (name === "cameras") renderWall(); });

  GW.wall = { load: loadCameras };
})();
