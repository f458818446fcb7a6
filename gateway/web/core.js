/* The page's small core, shared by every part through window.GW: the state all parts read
 * (language, visible tab, cameras), texts (t), requests (api), the gateway's clock and time
 * formatting, DOM helpers, the message toast, and a tiny event bus the parts listen on:
 *   "lang"     the language changed: relabel what you drew
 *   "tab"      a tab was shown (name)
 *   "tool"     an installer tool was shown (name: "zone" or "count")
 *   "cameras"  the camera list was reloaded
 * Plain JS, no build step. Every text from the server goes in through textContent (never innerHTML). */
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const store = {
    get(key, fallback) { try { const v = localStorage.getItem("gw." + key); return v === null ? fallback : v; } catch (e) { return fallback; } },
    set(key, value) { try { localStorage.setItem("gw." + key, value); } catch (e) { /* private mode */ } },
  };

  const state = {
    lang: store.get("lang", "zh") === "en" ? "en" : "zh",
    tab: "alerts",
    tool: "zone",           // the installer's tool on screen: zone (划定区域) or count (标注人数)
    cameras: [],
  };

  // ------------------------------------------------------------------ events between the parts

  const listeners = {};
  function on(name, fn) { (listeners[name] = listeners[name] || []).push(fn); }
  function emit(name, arg) { for (const fn of listeners[name] || []) fn(arg); }

  // ------------------------------------------------------------------ i18n

  function t(key, vars) {
    const table = window.I18N[state.lang] || window.I18N.zh;
    let text = table[key];
    if (text === undefined) text = window.I18N.zh[key] !== undefined ? window.I18N.zh[key] : key;
    if (vars) for (const k of Object.keys(vars)) text = text.split("{" + k + "}").join(String(vars[k]));
    return text;
  }
  function applyI18n() {
    document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
    $$("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
    $$("[data-i18n-ph]").forEach((node) => { node.placeholder = t(node.dataset.i18nPh); });
    $$("[data-i18n-title]").forEach((node) => { node.title = t(node.dataset.i18nTitle); });
    $("#lang").textContent = state.lang === "en" ? "中文" : "EN";
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
  let serverToday = "";
  let gatewayOffsetMin = null;   // the gateway's UTC offset, so the clock matches the alert times
  function setGatewayClock(iso) {
    const m = /([+-])(\d\d):(\d\d)$/.exec(iso || "");
    gatewayOffsetMin = m ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : (/Z$/.test(iso || "") ? 0 : null);
    const c = clockOf(iso);
    serverToday = c ? c.date : "";
  }
  /* The gateway's time of day now, and whether its date moved on since the last call. */
  function gatewayClock() {
    const now = new Date();
    if (gatewayOffsetMin === null) return { text: now.toLocaleTimeString("en-GB", { hour12: false }), newDay: false };
    const local = new Date(now.getTime() + gatewayOffsetMin * 60000);
    const pad = (n) => String(n).padStart(2, "0");
    const today = local.getUTCFullYear() + "-" + pad(local.getUTCMonth() + 1) + "-" + pad(local.getUTCDate());
    const newDay = !!serverToday && today !== serverToday;
    if (newDay) serverToday = today;
    return { text: pad(local.getUTCHours()) + ":" + pad(local.getUTCMinutes()) + ":" + pad(local.getUTCSeconds()), newDay };
  }
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
  function svgNode(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
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
  /* Whether `tool` of the installer tab is what the officer sees now (timers and keys follow it). */
  function toolOnScreen(tool) {
    return state.tab === "installer" && state.tool === tool && !document.hidden;
  }
  /* A key pressed while typing in a field or with a dialog open belongs to that field or dialog. */
  function keyForPage(event) {
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return false;
    return !document.querySelector("dialog[open]");
  }
  /* Load a fresh copy of a live picture into `img`, swapping only once it arrived (no flicker). */
  function refreshImage(img, url) {
    if (img.dataset.loading === "1") return;
    img.dataset.loading = "1";
    const next = new Image();
    next.onload = () => { img.src = next.src; img.hidden = false; img.dataset.loading = "0"; };
    next.onerror = () => { img.dataset.loading = "0"; };
    next.src = url + "?t=" + Date.now();
  }

  window.GW = {
    $, $$, store, state, on, emit, t, applyI18n, api, setGatewayClock, gatewayClock, shortTime, ago, duration,
    el, svgNode, toast, refreshImage, toolOnScreen, keyForPage,
  };
})();
