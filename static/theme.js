// The theme (CSP: a 'self' script, loaded in <head> so it runs before first paint).
// A stored choice ("light" or "dark") becomes data-theme on <html>, which the stylesheet
// prefers over the system's prefers-color-scheme; without one the system decides. The
// header's "Dark theme" button (aria-pressed) flips the theme shown and stores the choice.
(function () {
  var KEY = "cxrlab-theme";
  var root = document.documentElement;
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored() {
    try { return window.localStorage.getItem(KEY); } catch (e) { return null; }
  }

  function store(theme) {
    // Storage can be refused (private windows, policies): then the choice holds for this page only.
    try { window.localStorage.setItem(KEY, theme); } catch (e) { /* this page only */ }
  }

  function isDark() {
    if (root.dataset.theme) { return root.dataset.theme === "dark"; }
    return Boolean(system && system.matches);
  }

  var choice = stored();
  if (choice === "light" || choice === "dark") { root.dataset.theme = choice; }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.querySelector("button.theme");
    if (!button) { return; }
    function sync() { button.setAttribute("aria-pressed", String(isDark())); }
    button.addEventListener("click", function () {
      var next = isDark() ? "light" : "dark";
      root.dataset.theme = next;
      store(next);
      sync();
    });
    if (system && system.addEventListener) { system.addEventListener("change", sync); }
    sync();
    button.hidden = false;   // without JavaScript the button could not work: it stays hidden
  });
}());
