// The grid: the photos of one predicted class; mark the wrong ones, confirm the rest with one key.
// The marked ones stay claimed for this reviewer and open one by one on the desk.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("grid-data").textContent);
  const csrf = document.querySelector("#grid-page [name=csrfmiddlewaretoken]").value;
  const tiles = [...document.querySelectorAll(".grid-photo")];
  const message = document.getElementById("message");
  let focused = 0;
  let leaving = false;

  function focusTile(index) {
    if (!tiles.length) return;
    focused = (index + tiles.length) % tiles.length;
    tiles.forEach((tile, i) => tile.classList.toggle("focused", i === focused));
    tiles[focused].scrollIntoView({ block: "nearest" });
  }

  function toggle(tile) {
    const marked = tile.classList.toggle("marked");
    tile.setAttribute("aria-pressed", String(marked));
    document.getElementById("marked-count").textContent = tiles.filter((t) => t.classList.contains("marked")).length;
  }

  function columns() {
    if (tiles.length < 2) return 1;
    const top = tiles[0].getBoundingClientRect().top;
    const perRow = tiles.findIndex((tile) => tile.getBoundingClientRect().top !== top);
    return perRow === -1 ? tiles.length : perRow;
  }

  function post(address, body) {
    return window.deskPost(address, body, csrf);
  }

  async function confirm() {
    if (!tiles.length || leaving) return;
    const ids = (marked) => tiles.filter((t) => t.classList.contains("marked") === marked).map((t) => Number(t.dataset.id));
    document.getElementById("confirm").disabled = true;
    try {
      const result = await post(data.confirm, { confirm: ids(false), wrong: ids(true) });
      leaving = true;
      if (result.refused.length) {
        message.textContent = `${result.confirmed} confirmed; not confirmed: ${result.refused.map((r) => r.detail).join("; ")}`;
        window.setTimeout(() => (window.location.href = data.desk), 2500);
      } else {
        window.location.href = data.desk;
      }
    } catch (error) {
      message.textContent = `Not saved: ${error.message}`;
      message.className = "desk-message error";
      document.getElementById("confirm").disabled = false;
    }
  }

  async function back() {
    leaving = true;
    const ids = tiles.map((t) => Number(t.dataset.id));
    try {
      if (ids.length) await post(data.release, { ids: ids });
    } finally {
      window.location.href = data.desk;
    }
  }

  tiles.forEach((tile, index) =>
    tile.addEventListener("click", () => {
      focusTile(index);
      toggle(tile);
      tile.blur(); // the keys below, not the button's own, act from here on
    })
  );
  document.getElementById("confirm").addEventListener("click", confirm);
  document.getElementById("back").addEventListener("click", (event) => {
    event.preventDefault();
    back();
  });
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
    if (event.key in moves) {
      event.preventDefault();
      focusTile(focused + moves[event.key]);
    } else if (event.key === " ") {
      event.preventDefault();
      if (tiles.length) toggle(tiles[focused]);
    } else if (event.key === "Enter") {
      event.preventDefault();
      confirm();
    } else if (event.key === "Escape") {
      event.preventDefault();
      back();
    }
  });
  focusTile(0);
})();
