// SentryAgent console: the live parts of the dashboard pages. No inline
// script anywhere (the Content-Security-Policy forbids it): everything is
// wired here from data-* attributes the server renders.
(function () {
  "use strict";

  // ---- Usage: refresh the meters every data-refresh-seconds (default 60).
  function setText(root, sel, text) {
    var e = root.querySelector(sel);
    if (e) e.textContent = text;
  }

  function fmt(n) {
    return Number(n).toLocaleString("en-US");
  }

  function updateMeter(root, name, m) {
    var box = root.querySelector('[data-metric="' + name + '"]');
    if (!box || !m) return;
    setText(box, ".meter-used", fmt(m.used));
    setText(box, ".meter-limit", m.limit === null ? "unlimited" : fmt(m.limit));
    setText(box, ".meter-percent", m.limit === null ? "" : m.percent + "%");
    var bar = box.querySelector("progress");
    if (bar) {
      bar.max = m.limit === null ? 1 : Math.max(m.limit, 1);
      bar.value = m.limit === null ? 0 : Math.min(m.used, bar.max);
    }
    box.classList.toggle("meter-warn", !!m.approaching_limit);
  }

  function updateBanner(root, u) {
    var slot = root.querySelector("[data-usage-banner]");
    if (!slot) return;
    var m = u.api_calls_today;
    var warn = m && m.limit !== null && m.percent >= 80;
    var banner = slot.querySelector('[role="alert"]');
    if (!warn) {
      if (banner) banner.remove();
      return;
    }
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "banner banner-warn";
      banner.setAttribute("role", "alert");
      slot.appendChild(banner);
    }
    banner.textContent = "";
    banner.appendChild(
      document.createTextNode(
        "You have used " + m.percent + "% of today's API calls (" + fmt(m.used) +
          " of " + fmt(m.limit) + "). "
      )
    );
    var a = document.createElement("a");
    a.href = slot.getAttribute("data-upgrade-href");
    a.textContent = "Upgrade your tier";
    banner.appendChild(a);
  }

  function startUsage(root) {
    var src = root.getAttribute("data-usage-src");
    var secs = parseInt(root.getAttribute("data-refresh-seconds"), 10);
    if (!src || !(secs > 0)) return;
    var status = root.querySelector("[data-usage-updated]");
    function tick() {
      fetch(src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok) throw new Error(r.status);
          return r.json();
        })
        .then(function (u) {
          updateMeter(root, "api_calls_today", u.api_calls_today);
          updateMeter(root, "agents", u.agents);
          updateMeter(root, "token_issuances_this_month", u.token_issuances_this_month);
          updateBanner(root, u);
          if (status) status.textContent = "Updated " + new Date().toLocaleTimeString();
        })
        .catch(function () {
          if (status) status.textContent = "Could not refresh; retrying.";
        });
    }
    window.setInterval(tick, secs * 1000);
  }

  // ---- Analytics: charts drawn by the server, fetched once the page and
  // its table are shown.
  function loadChart(box) {
    var src = box.getAttribute("data-src");
    if (!src || box.getAttribute("data-loaded")) return;
    box.setAttribute("data-loaded", "loading");
    fetch(src, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "image/svg+xml");
        var svg = doc.documentElement;
        if (!svg || svg.nodeName !== "svg") throw new Error("not an SVG");
        var slot = box.querySelector(".chart-slot") || box;
        slot.textContent = "";
        slot.appendChild(document.importNode(svg, true));
        box.setAttribute("data-loaded", "yes");
      })
      .catch(function () {
        box.setAttribute("data-loaded", "failed");
        var slot = box.querySelector(".chart-slot") || box;
        slot.textContent = "The chart could not be loaded.";
      });
  }

  function startCharts() {
    var boxes = document.querySelectorAll("[data-chart][data-src]");
    if (!boxes.length) return;
    if ("IntersectionObserver" in window) {
      var io = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (e.isIntersecting) {
            io.unobserve(e.target);
            loadChart(e.target);
          }
        });
      }, { rootMargin: "200px" });
      boxes.forEach(function (b) { io.observe(b); });
    } else {
      boxes.forEach(loadChart);
    }
  }

  // ---- Sortable tables: a button in each sortable header.
  function startSorting(table) {
    var body = table.tBodies[0];
    if (!body) return;
    table.querySelectorAll("th[data-sort] button").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var th = btn.closest("th");
        var col = Array.prototype.indexOf.call(th.parentNode.children, th);
        var numeric = th.getAttribute("data-type") === "number";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th[data-sort]").forEach(function (h) {
          h.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-value") || a.cells[col].textContent.trim();
          var y = b.cells[col].getAttribute("data-value") || b.cells[col].textContent.trim();
          var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function start() {
    var usage = document.querySelector("[data-usage-src]");
    if (usage) startUsage(usage);
    startCharts();
    document.querySelectorAll("table[data-sortable]").forEach(startSorting);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
