// Grad-CAM toggle: one map per model at a time, chosen per pathology (CSP: a 'self' script).
// Without JavaScript every map stays visible, one under the other.
document.querySelectorAll(".heatmaps").forEach(function (box) {
  function show(name) {
    box.querySelectorAll("figure.heatmap").forEach(function (f) { f.hidden = f.dataset.output !== name; });
    box.querySelectorAll(".toggle button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.output === name));
    });
  }
  box.querySelectorAll(".toggle button").forEach(function (b) {
    b.addEventListener("click", function () { show(b.dataset.output); });
  });
  show(box.dataset.default || box.querySelector("figure.heatmap").dataset.output);
});

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
