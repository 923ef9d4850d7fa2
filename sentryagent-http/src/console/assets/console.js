// SentryAgent console: small progressive enhancements. Every page works
// without this file; it only adds copy and download buttons.
(function () {
  "use strict";
  function textOf(sel) {
    var el = document.querySelector(sel);
    return el ? el.textContent : "";
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) return;
    var copy = t.closest("[data-copy]");
    if (copy) {
      ev.preventDefault();
      var text = textOf(copy.getAttribute("data-copy"));
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () {
          copy.setAttribute("data-copied", "true");
          copy.textContent = "Copied";
        });
      }
      return;
    }
    var dl = t.closest("[data-download]");
    if (dl) {
      ev.preventDefault();
      var blob = new Blob([textOf(dl.getAttribute("data-download"))], { type: "application/octet-stream" });
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = dl.getAttribute("data-filename") || "download.txt";
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
    }
  });
  // The audit page's live tail: the API's event stream, rows added as
  // text (never as HTML).
  var live = document.querySelector("[data-audit-stream]");
  if (live && window.EventSource) {
    live.addEventListener("click", function () {
      var status = document.querySelector("[data-live-status]");
      var rows = document.getElementById("audit-rows");
      var source = new EventSource(live.getAttribute("data-audit-stream"), { withCredentials: true });
      live.disabled = true;
      source.addEventListener("open", function () { if (status) status.textContent = "live"; });
      source.addEventListener("error", function () { if (status) status.textContent = "reconnecting"; });
      source.addEventListener("audit", function (msg) {
        var e;
        try { e = JSON.parse(msg.data); } catch (_) { return; }
        var tr = document.createElement("tr");
        tr.setAttribute("data-seq", String(e.seq));
        tr.setAttribute("data-live", "true");
        [e.at, e.action, e.actor, e.target || "", e.outcome].forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = v == null ? "" : String(v);
          tr.appendChild(td);
        });
        if (rows) rows.insertBefore(tr, rows.firstChild);
      });
    });
  }
  // Links that carry a token in their fragment (#token=...): into the
  // form, and out of the address bar.
  var tokenField = document.querySelector("[data-fragment-token]");
  if (tokenField && location.hash.indexOf("#token=") === 0) {
    tokenField.value = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, "", location.pathname + location.search);
  }
  // Buttons that need the script are hidden until it runs.
  document.querySelectorAll("[data-needs-js]").forEach(function (el) { el.hidden = false; });
})();
