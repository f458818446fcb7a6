/* 工单状态 (the centre's case): the latest step on an alert's card, and on request every step that
 * led there as a small timeline (GET /api/events/{id} lists them in time order). The centre's
 * words (who, notes) are its text and go in through textContent only. An open timeline follows
 * new steps as the stream brings them. Uses the page's core (window.GW, core.js). */
"use strict";

(function () {
  const GW = window.GW;
  const { $, el, t } = GW;

  const open = new Set();       // event ids whose timeline is shown
  const steps = new Map();      // event id -> the steps last read, and the latest step they end with
  const reading = new Set();    // event ids whose steps are being read (one request at a time)
  const shownStep = new Map();  // event id -> the latest step its card shows

  function stepKey(step) { return step ? step.status + "|" + step.at + "|" + step.case_id : ""; }

  /* The card's case line and timeline for event `ev` (`card` holds .case-status and .case-steps). */
  function render(ev, card) {
    const line = $(".case-status", card);
    const list = $(".case-steps", card);
    const step = ev.case;
    shownStep.set(ev.event_id, stepKey(step));
    line.textContent = "";
    line.hidden = !step;
    if (!step) { list.hidden = true; return; }
    line.dataset.status = step.status;
    line.append(el("span", "case-label", t("case.status")));
    line.append(el("b", "case-state", t("case." + step.status)));
    line.append(el("span", "case-id", step.case_id));
    if (step.by) line.append(el("span", "case-by", step.by));
    const at = el("span", "case-at", GW.shortTime(step.at));
    at.title = step.at;
    line.append(at);
    if (step.note) line.append(el("span", "case-note", step.note));
    const shown = open.has(ev.event_id);
    const toggle = el("button", "link-btn case-toggle", t(shown ? "case.hideSteps" : "case.showSteps"));
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", shown ? "true" : "false");
    toggle.addEventListener("click", () => flip(ev, card));
    line.append(toggle);
    list.hidden = !shown;
    if (!shown) return;
    const known = steps.get(ev.event_id);
    if (known && known.latest === stepKey(step)) fill(list, known.items);
    else load(ev.event_id, card);
  }

  function flip(ev, card) {
    if (open.has(ev.event_id)) open.delete(ev.event_id);
    else open.add(ev.event_id);
    render(ev, card);
  }

  async function load(id, card) {
    if (reading.has(id)) return;
    reading.add(id);
    const asked = shownStep.get(id);
    try {
      const detail = await GW.api("/api/events/" + encodeURIComponent(id));
      const items = detail.cases || [];
      steps.set(id, { latest: stepKey(items[items.length - 1]), items: items });
      if (open.has(id)) fill($(".case-steps", card), items);
    } catch (error) {
      GW.toast(t("case.loadFailed", { msg: error.message }), true);
      return;
    } finally {
      reading.delete(id);
    }
    if (open.has(id) && shownStep.get(id) !== asked) load(id, card);  // a step came in while reading
  }

  function fill(list, items) {
    list.textContent = "";
    for (const step of items) {
      const item = el("li", "case-step");
      item.dataset.status = step.status;
      item.append(el("b", "step-state", t("case." + step.status)));
      const at = el("span", "step-at", GW.shortTime(step.at));
      at.title = step.at;
      item.append(at);
      if (step.by) item.append(el("span", "step-by", step.by));
      item.append(el("span", "step-id", step.case_id));
      if (step.note) item.append(el("span", "step-note", step.note));
      list.append(item);
    }
  }

  GW.cases = { render };
})();
