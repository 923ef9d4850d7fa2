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
  // Buttons that need the script are hidden until it runs.
  document.querySelectorAll("[data-needs-js]").forEach(function (el) { el.hidden = false; });
})();
