/* feedback-hub UI behaviour. Loaded as a file (the CSP forbids inline scripts).
 * - filter menus submit on change, and empty filters stay out of the URL
 * - inbox rows open their case on click
 * - the inbox polls /inbox/updates.json and inserts new rows by risk, highlighted
 *   (All feedback), or says how many arrived with a reload link (case views)
 * - bulk selection in the case views; the header collapses behind a button on phones
 * - the case page polls its presence endpoint: who else has it open, and
 *   whether it changed since it loaded; the reply panel fills its links
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
    var mode = table.getAttribute("data-live");
    if (mode !== "on" && mode !== "notice") return;
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
          if (mode === "notice") {
            fresh += data["new"] || 0;
            if (live && fresh) {
              live.hidden = false;
              liveCount.textContent = label.replace("#", String(fresh));
            }
            return;
          }
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

  function setupBulk() {
    var form = document.getElementById("bulk");
    if (!form) return;
    var all = document.getElementById("pick-all");
    var count = document.getElementById("bulk-count");
    var label = count.getAttribute("data-label") || "# selected";
    var idle = count.textContent;
    function boxes() { return document.querySelectorAll('input[name="case_id"][form="bulk"]'); }
    function update() {
      var n = Array.prototype.filter.call(boxes(), function (b) { return b.checked; }).length;
      count.textContent = n ? label.replace("#", String(n)) : idle;
    }
    document.addEventListener("change", function (ev) {
      if (ev.target === all) boxes().forEach(function (b) { b.checked = all.checked; });
      if (ev.target === all || ev.target.getAttribute("form") === "bulk") update();
    });
  }

  function setupFilterToggle() {
    // On a phone the filters fold away behind a button (open when some are in use).
    var button = document.getElementById("filters-toggle");
    var form = document.getElementById("filters");
    if (!button || !form) return;
    button.addEventListener("click", function () {
      var open = form.classList.toggle("open");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function setupMenu() {
    var button = document.getElementById("menu-toggle");
    var header = document.querySelector(".topbar");
    if (!button || !header) return;
    button.addEventListener("click", function () {
      var open = header.classList.toggle("open");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function csrfToken() {
    var el = document.querySelector('input[name="csrf_token"]');
    return el ? el.value : "";
  }

  function setupPresence() {
    // Who else has this case open, and did it change since this page loaded?
    var box = document.getElementById("presence");
    if (!box) return;
    var url = box.getAttribute("data-url");
    var version = box.getAttribute("data-version");
    var every = parseInt(box.getAttribute("data-poll-ms") || "15000", 10);
    var others = document.getElementById("presence-others");
    var changed = document.getElementById("presence-changed");
    var othersLabel = others.getAttribute("data-label") || "#";
    function poll() {
      if (document.visibilityState === "hidden") return;
      fetch(url, { method: "POST", credentials: "same-origin",
                   headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (data) {
          if (!data) return;
          if (data.others.length) {
            others.textContent = othersLabel.replace("#", data.others.join(", "));
            others.hidden = false;
          } else {
            others.hidden = true;
          }
          if (String(data.version) !== version) changed.hidden = false;
        })
        .catch(function () { /* try again next round */ });
    }
    poll();
    window.setInterval(poll, every);
  }

  function setupReply() {
    // The reply panel: a canned answer fills the text; the links carry the text.
    var panel = document.getElementById("reply-panel");
    if (!panel) return;
    var text = document.getElementById("reply-text");
    var links = panel.querySelectorAll("a[data-reply-template]");
    function refresh() {
      links.forEach(function (a) {
        a.href = a.getAttribute("data-reply-template").replace("__TEXT__", encodeURIComponent(text.value));
      });
    }
    panel.querySelectorAll("button[data-canned]").forEach(function (b) {
      b.addEventListener("click", function () {
        text.value = b.getAttribute("data-canned");
        refresh();
        text.focus();
      });
    });
    text.addEventListener("input", refresh);
    refresh();
  }

  function setupScrollRegions() {
    // A chart wider than a phone scrolls inside its card: make that card
    // reachable by keyboard (arrow keys scroll it) and name it by its heading.
    document.querySelectorAll(".chart-card").forEach(function (card) {
      if (card.scrollWidth <= card.clientWidth) return;
      var heading = card.querySelector("h2");
      card.setAttribute("tabindex", "0");
      card.setAttribute("role", "region");
      if (heading) card.setAttribute("aria-label", heading.textContent.trim());
    });
  }

  onReady(function () {
    setupFilters();
    setupScrollRegions();
    setupMenu();
    setupFilterToggle();
    setupBulk();
    setupPresence();
    setupReply();
    var table = document.getElementById("inbox");
    if (table) setupLive(table);
  });
})();
