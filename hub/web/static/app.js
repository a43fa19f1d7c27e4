/* feedback-hub UI behaviour. Loaded as a file (the CSP forbids inline scripts).
 * - filter menus submit on change, and empty filters stay out of the URL
 * - inbox rows open their case on click
 * - the inbox polls /inbox/updates.json and inserts new rows by risk, highlighted
 * Row HTML comes from the server's own template (escaped there); nothing here
 * builds markup from customer text. */
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function cleanSubmit(form) {
    // Leave empty fields out so a shared link shows only the filters in use.
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && !el.value) el.disabled = true;
    });
  }

  function setupFilters() {
    var form = document.getElementById("filters");
    if (!form) return;
    form.addEventListener("submit", function () { cleanSubmit(form); });
    form.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { cleanSubmit(form); form.submit(); });
    });
  }

  function setupRowLinks(tbody) {
    tbody.addEventListener("click", function (ev) {
      if (ev.target.closest("a, button, input, select, textarea")) return;
      var tr = ev.target.closest("tr[data-href]");
      if (tr) window.location.assign(tr.getAttribute("data-href"));
    });
  }

  function insertByRisk(tbody, tr) {
    var risk = parseInt(tr.getAttribute("data-risk") || "0", 10);
    var rows = tbody.querySelectorAll("tr.item");
    for (var i = 0; i < rows.length; i++) {
      if (parseInt(rows[i].getAttribute("data-risk") || "0", 10) <= risk) {
        tbody.insertBefore(tr, rows[i]);
        return;
      }
    }
    tbody.appendChild(tr);
  }

  function setupLive(table) {
    var tbody = table.querySelector("tbody");
    setupRowLinks(tbody);
    if (table.getAttribute("data-live") !== "on") return;
    var after = table.getAttribute("data-after") || "0";
    var every = parseInt(table.getAttribute("data-poll-ms") || "5000", 10);
    var base = table.getAttribute("data-updates");
    var label = table.getAttribute("data-new-label") || "# new";
    var live = document.getElementById("live");
    var liveCount = document.getElementById("live-count");
    var fresh = 0;
    var busy = false;

    function poll() {
      if (busy || document.visibilityState === "hidden") return;
      busy = true;
      var url = new URL(base, window.location.href);
      url.searchParams.set("after", after);
      fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (data) {
          if (!data) return;
          after = String(data.latest);
          if (!data.rows.length) return;
          var empty = document.getElementById("empty");
          if (empty) empty.remove();
          data.rows.forEach(function (row) {
            if (tbody.querySelector('tr[data-id="' + row.id + '"]')) return;
            var tpl = document.createElement("template");
            tpl.innerHTML = row.html.trim();
            var tr = tpl.content.firstElementChild;
            if (!tr) return;
            insertByRisk(tbody, tr);
            fresh += 1;
            // The highlight fades after a while; the row keeps a marker.
            window.setTimeout(function () { tr.classList.add("was-new"); }, 8000);
          });
          if (live && fresh) {
            live.hidden = false;
            liveCount.textContent = label.replace("#", String(fresh));
          }
        })
        .catch(function () { /* offline for a moment: try again next round */ })
        .then(function () { busy = false; });
    }
    window.setInterval(poll, every);
  }

  onReady(function () {
    setupFilters();
    var table = document.getElementById("inbox");
    if (table) setupLive(table);
  });
})();
