// Result views: the per-model columns or the pathology × model matrix, one at a time (buttons
// with aria-pressed; the choice is kept for the next result). CSP: a 'self' script.
// Without JavaScript both views are shown, one under the other.
(function () {
  var bar = document.querySelector(".view-switch");
  if (!bar) { return; }
  var buttons = bar.querySelectorAll("button");
  function show(name) {
    document.querySelectorAll(".result-view").forEach(function (v) { v.hidden = v.dataset.view !== name; });
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.view === name)); });
    try { localStorage.setItem("cxrlab-result-view", name); } catch (e) { /* storage off: not kept */ }
  }
  buttons.forEach(function (b) { b.addEventListener("click", function () { show(b.dataset.view); }); });
  var kept = null;
  try { kept = localStorage.getItem("cxrlab-result-view"); } catch (e) { kept = null; }
  bar.hidden = false;
  show(kept === "matrix" ? "matrix" : "columns");
}());

// Heatmap strip: one pathology at a time, every model's map over the same picture; the layers'
// opacity (a CSS variable), the plain picture without them, and zoom. Without JavaScript every
// pathology's strip is shown at the default opacity.
(function () {
  var box = document.querySelector(".heatmap-strip");
  if (!box) { return; }
  var controls = box.querySelector(".strip-controls");
  var slider = controls.querySelector("input.opacity");
  var value = controls.querySelector("output.opacity-value");
  var choices = controls.querySelectorAll(".toggle button");

  function pick(name) {
    box.querySelectorAll(".strip").forEach(function (s) { s.hidden = s.dataset.output !== name; });
    choices.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.output === name)); });
  }
  function opacity() {
    box.style.setProperty("--heat-opacity", String(slider.value / 100));
    value.textContent = slider.value + " %";
  }
  function toggle(button, cls) {
    button.addEventListener("click", function () {
      var on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(on));
      box.classList.toggle(cls, on);
    });
  }
  choices.forEach(function (b) { b.addEventListener("click", function () { pick(b.dataset.output); }); });
  slider.addEventListener("input", opacity);
  toggle(controls.querySelector(".plain-toggle"), "plain");
  toggle(controls.querySelector(".zoom-toggle"), "zoomed");
  controls.hidden = false;
  pick(box.dataset.default);
  opacity();
}());

// "Download report": the upload, embedded in the page as base64, goes back as a real file part
// (multipart, so the report has the upload's own size limit), with the upload form's other
// entries (heatmap class, clinical inputs) and the format. The report comes back as a download.
// Without JavaScript the form stays hidden and the page points to POST /api/report.
(function () {
  var box = document.querySelector(".report-js");
  if (!box || !window.fetch || !window.FormData || !window.Blob) { return; }
  var form = box.querySelector("form.report");
  var error = form.querySelector(".report-error");
  var button = form.querySelector("button[type=submit]");
  box.hidden = false;

  function uploadBlob() {
    var text = atob(form.querySelector("input.payload").value);
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
    return new Blob([bytes], { type: "application/octet-stream" });
  }

  function downloadName(response) {
    var header = response.headers.get("Content-Disposition") || "";
    var match = /filename="([^"]+)"/.exec(header);
    return match ? match[1] : "cxrlab-report";
  }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function failed(response) {
    // Error bodies are JSON when asked for (app/errors.py): show the message in the page.
    return response.json().then(function (body) { return body.message || body.error; },
                                function () { return "The report could not be built (HTTP " + response.status + ")."; });
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showError("");
    var data = new FormData(form);
    data.append("file", uploadBlob(), form.dataset.filename || "upload");
    button.disabled = true;
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
                         headers: { "Accept": "application/json, application/pdf, application/dicom" } })
      .then(function (response) {
        if (!response.ok) { return failed(response).then(showError); }
        return response.blob().then(function (blob) { save(blob, downloadName(response)); });
      })
      .catch(function () { showError("The report could not be downloaded: the server did not answer."); })
      .then(function () { button.disabled = false; });
  });
}());
