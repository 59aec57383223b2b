// The colour theme, set on <html data-theme> before anything paints: this file is loaded by a
// blocking <script> in <head> (no inline script: the CSP allows only our own files). The choice
// is kept per browser in localStorage: "light", "dark", or "system" (the default, nothing
// stored), which follows prefers-color-scheme and changes with it.
(function () {
  "use strict";
  var KEY = "bytespike-theme";
  var CHOICES = ["light", "dark", "system"];
  var root = document.documentElement;
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function choice() {
    var value = null;
    try { value = window.localStorage.getItem(KEY); } catch (ignored) { /* storage refused */ }
    return CHOICES.indexOf(value) >= 0 ? value : "system";
  }

  function apply() {
    var chosen = choice();
    var dark = chosen === "dark" || (chosen === "system" && !!system && system.matches);
    root.setAttribute("data-theme", dark ? "dark" : "light");
  }

  function choose(value) {
    if (CHOICES.indexOf(value) < 0) return;
    try {
      if (value === "system") window.localStorage.removeItem(KEY);
      else window.localStorage.setItem(KEY, value);
    } catch (ignored) { /* private mode: the choice lasts for this page */ }
    if (value !== "system") root.setAttribute("data-theme", value);
    else apply();
  }

  apply();
  if (system && system.addEventListener) system.addEventListener("change", apply);
  // Another tab changed the choice.
  window.addEventListener("storage", function (event) { if (event.key === KEY) apply(); });
  window.ByteSpikeTheme = { choice: choice, choose: choose };
})();
