// The demo's training panel (templates/_training_progress.html): asks the app every 5 s how far
// the run is, updates the sentence, says when more models are ready, and hides itself at the end.
(function () {
  "use strict";
  const panel = document.getElementById("training-progress");
  if (!panel) {
    return;
  }
  const shown = Number(panel.dataset.ready);
  async function poll() {
    try {
      const answer = await fetch(panel.dataset.url, { headers: { Accept: "application/json" } });
      const progress = await answer.json();
      if (!progress.active) {
        panel.hidden = true;
        return;
      }
      panel.querySelector(".training-text").textContent = progress.text;
      panel.querySelector(".training-new").hidden = progress.ready.length <= shown;
    } catch (err) {
      // the app restarting or gone: keep the last sentence, try again
    }
    window.setTimeout(poll, 5000);
  }
  window.setTimeout(poll, 5000);
})();
