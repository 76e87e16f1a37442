// The upload form's busy state (CSP: a 'self' script): running every model takes seconds,
// so on submit the button is disabled and says so, the form is aria-busy and a status line
// (role=status) tells screen readers. Coming back with the back button re-enables it.
(function () {
  var form = document.querySelector("form.upload");
  if (!form) { return; }
  var button = form.querySelector("button[type=submit]");
  var status = form.querySelector(".status");
  var idle = button.textContent;
  var n = Number(form.dataset.models) || 0;
  var busy = "Running " + n + " model" + (n === 1 ? "" : "s") + "\u2026";

  function setBusy(on) {
    button.disabled = on;
    button.textContent = on ? busy : idle;
    form.setAttribute("aria-busy", String(on));
    status.textContent = on ? busy + " The result page opens when all have answered." : "";
  }

  form.addEventListener("submit", function () { setBusy(true); });
  // pageshow also fires when the page comes back from the back-forward cache, still busy.
  window.addEventListener("pageshow", function () { setBusy(false); });
}());
