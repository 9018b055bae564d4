// Keeps a status page live without reloads: every 500 ms, asks for the page's live part
// (`?fragment`) with the ETag of what it shows; muster answers 304 when nothing changed,
// else the new part, which replaces the old. The markup comes from muster, which escapes
// every value in it. Without this script the page is the same, updated by a reload.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!main || !window.fetch) {
    return;
  }
  var etag = main.getAttribute("data-etag");
  var url = location.pathname + (location.search ? location.search + "&" : "?") + "fragment";
  function show(text, failed) {
    state.textContent = text;
    if (failed) {
      state.setAttribute("class", "bad");
    } else {
      state.removeAttribute("class");
    }
  }
  function poll() {
    var headers = etag ? { "If-None-Match": etag } : {};
    fetch(url, { headers: headers, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 304) {
          show("live", false);
          return null;
        }
        if (!response.ok) {
          show("live: " + response.status + " (reload to see why)", true);
          return null;
        }
        etag = response.headers.get("ETag");
        return response.text().then(function (html) {
          main.innerHTML = html;
          main.setAttribute("data-etag", etag || "");
          show("live", false);
        });
      })
      .catch(function () {
        show("live: muster does not answer", true);
      })
      .then(function () {
        setTimeout(poll, 500);
      });
  }
  show("live", false);
  setTimeout(poll, 500);
})();
