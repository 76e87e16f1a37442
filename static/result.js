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
