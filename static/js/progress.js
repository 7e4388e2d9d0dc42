// Follows a running batch: polls the run's API twice a second, moves the progress bar,
// and reloads the page once the run has finished so that every result is shown.
(function () {
  const box = document.getElementById("progress");
  if (!box || box.dataset.finished === "true") return;
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const status = document.getElementById("run-status");

  async function poll() {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const run = await response.json();
        const p = run.progress;
        bar.max = Math.max(p.total, 1);
        bar.value = p.done;
        text.textContent =
          p.done === 0 && run.status === "running"
            ? `0 of ${p.total} photos done: starting (a worker takes the run and loads the model, a few seconds the first time)…`
            : `${p.done} of ${p.total} photos done (${p.predicted} classified, ${p.failed} failed)`;
        const label = run.status.replace(/_/g, " ");
        status.textContent = label.charAt(0).toUpperCase() + label.slice(1);
        if (run.status !== "running") {
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      text.textContent += " (connection lost, retrying…)";
    }
    window.setTimeout(poll, 500);
  }
  window.setTimeout(poll, 300);
})();
