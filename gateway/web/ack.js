/* 确认 (acknowledge): the small form an officer fills to acknowledge an alert, on a laptop or a
 * phone. It asks for the officer's name the first time (this browser remembers it; the header
 * field and the form both change it) and takes an optional case number (工单号) and note, as
 * POST /api/events/{id}/ack {"by", "case_id"?, "note"?} does. Nothing goes out without a name.
 * Uses the page's core (window.GW, core.js); every text goes in through textContent. */
"use strict";

(function () {
  const GW = window.GW;
  const { $, t } = GW;

  let pending = null;   // {id, done(result)} of the alert the form is open for
  let sending = false;

  function officer() { return (GW.store.get("officer", "") || "").trim(); }
  function rememberOfficer(name) {
    GW.store.set("officer", name);
    $("#officer").value = name;
  }

  /* Open the form for alert `ev`; `done(result)` gets the API's answer once it was sent. */
  function open(ev, title, done) {
    pending = { id: ev.event_id, done: done };
    $("#ack-what").textContent = title;
    $("#ack-name").value = officer();
    $("#ack-case").value = "";
    $("#ack-note").value = "";
    showError("");
    const dialog = $("#ack-dialog");
    if (!dialog.open) dialog.showModal();
    (officer() ? $("#ack-send") : $("#ack-name")).focus();
  }

  function showError(text) {
    $("#ack-error").textContent = text;
    $("#ack-error").hidden = !text;
  }

  async function send(event) {
    event.preventDefault();
    if (!pending || sending) return;
    const name = $("#ack-name").value.trim();
    if (!name) {
      showError(t("ack.needName"));
      $("#ack-name").focus();
      return;
    }
    const body = { by: name };
    const caseId = $("#ack-case").value.trim();
    const note = $("#ack-note").value.trim();
    if (caseId) body.case_id = caseId;
    if (note) body.note = note;
    sending = true;
    $("#ack-send").disabled = true;
    $("#ack-send").textContent = t("alert.acking");
    try {
      const result = await GW.api("/api/events/" + encodeURIComponent(pending.id) + "/ack", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      rememberOfficer(name);
      const done = pending.done;
      pending = null;
      $("#ack-dialog").close();
      done(result);
    } catch (error) {
      showError(t("ack.failed", { msg: error.message }));
    } finally {
      sending = false;
      $("#ack-send").disabled = false;
      $("#ack-send").textContent = t("ack.send");
    }
  }

  function bind() {
    const header = $("#officer");
    header.value = officer();
    header.addEventListener("change", () => rememberOfficer(header.value.trim()));
    $("#ack-form").addEventListener("submit", send);
    $("#ack-cancel").addEventListener("click", () => $("#ack-dialog").close());
    $("#ack-dialog").addEventListener("close", () => { pending = null; });
  }

  GW.ack = { bind, open };
})();
