// slotsync ops console: confirmations and live run progress. Plain JS, no inline code
// (the Content-Security-Policy allows scripts from this origin only).
"use strict";

document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function watchRun(row) {
  var url = row.getAttribute("data-progress-url");
  var bar = row.querySelector("progress");
  var status = row.querySelector("[data-field=status]");
  var counts = row.querySelector("[data-field=chunks]");
  var finished = row.querySelector("[data-field=finished]");
  var error = row.querySelector("[data-field=error]");
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (run) {
        if (!run) { return; }
        bar.max = Math.max(run.chunks_total, 1);
        bar.value = run.chunks_done + run.chunks_failed;
        status.textContent = run.status;
        status.className = "state state-" + run.status;
        counts.textContent = run.chunks_done + " / " + run.chunks_total +
          (run.chunks_failed ? " (" + run.chunks_failed + " failed)" : "");
        finished.textContent = run.finished_at;
        if (error) { error.textContent = run.error || ""; }
        if (run.status === "running" || run.status === "scheduled" || run.status === "planning") {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("tr[data-live]").forEach(watchRun);
  // A run just asked for is not recorded yet: look again shortly.
  if (document.querySelector("[data-pending-run]")) {
    window.setTimeout(function () { window.location.reload(); }, 1000);
  }
});
