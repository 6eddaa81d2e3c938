// The console's own script (the Content-Security-Policy allows no other): htmx's requests carry the session's
// CSRF token, and an error answer (4xx/5xx, a problem page fragment) is shown in the page's alert region.
(function () {
  "use strict";
  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = token();
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400) {
      var region = document.getElementById("problem");
      if (region) {
        event.detail.shouldSwap = true;
        event.detail.isError = false;
        event.detail.target = region;
        event.detail.swapOverride = "innerHTML";
      }
    }
  });
})();
