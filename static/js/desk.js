// The review desk: one photo at a time, one key per decision, the next photo already there.
// The server hands out items claimed for this reviewer; every decision is one request that also
// claims the next item, so two photos are always held: the one on screen and the next.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("desk-data").textContent);
  const csrf = document.querySelector("#queue-form [name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const COMMANDS = new Set(["a", "n", "u", "s", "z", "g", "f"]);
  const HELD = 2; // the photo on screen and the next one
  const SKIPPED_KEY = "review-desk-skipped";

  const state = {
    queue: [], // claimed items, the first one on screen
    recent: data.recent, // the reviewer's last decisions, newest first
    skipped: new Set(JSON.parse(sessionStorage.getItem(SKIPPED_KEY) || "[]")),
    shownAt: 0,
    highlighted: 0,
    waiting: parseInt($("waiting").textContent, 10) || 0,
    classes: [],
  };

  function url(template, id) {
    return template.replace("/0/", `/${id}/`);
  }

  function post(address, body) {
    return window.deskPost(address, body, csrf);
  }

  function held() {
    return [...state.queue.map((item) => item.id), ...state.skipped];
  }

  function wanted(count) {
    return { queue: data.queue, count: count, exclude: held() };
  }

  function take(items) {
    const known = new Set(state.queue.map((item) => item.id));
    for (const item of items) {
      if (!known.has(item.id)) state.queue.push(item);
    }
    if (state.queue[1] && state.queue[1].photo) new Image().src = state.queue[1].photo; // decoded ahead
  }

  function say(text, kind) {
    const message = $("message");
    message.textContent = text || "";
    message.className = `desk-message ${kind || ""}`;
  }

  // --- showing an item ---------------------------------------------------------

  function show() {
    const item = state.queue[0];
    closePicker();
    closeNote();
    $("empty").hidden = Boolean(item);
    $("panel").hidden = !item;
    $("desk-main").classList.toggle("is-empty", !item);
    $("waiting").textContent = Math.max(state.waiting, state.queue.length);
    $("unskip").hidden = item || !state.skipped.size;
    $("skipped-count").textContent = state.skipped.size;
    if (!item) {
      delete $("desk-main").dataset.item;
      $("photo").removeAttribute("src");
      $("photo-name").textContent = "";
      return;
    }
    $("desk-main").dataset.item = item.id; // which item is on screen (tests and screenshots)
    $("photo").src = item.photo || "";
    $("photo").alt = item.photo ? `Photo ${item.name}` : "The photo cannot be shown";
    $("photo-name").textContent = `${item.name}${item.run ? ` · run #${item.run}` : ""}`;
    $("reason").textContent = item.reason_label;
    $("reason").className = `reason ${item.reason}`;
    $("predicted").textContent = item.predicted_class;
    $("accept-class").textContent = item.predicted_class;
    const percent = (value) => `${(100 * value).toFixed(1)}%`;
    $("confidence-bar").style.width = percent(item.confidence);
    const tick = $("threshold-tick");
    tick.hidden = item.threshold === null;
    if (item.threshold !== null) tick.style.left = percent(Math.min(item.threshold, 1));
    $("confidence-text").textContent =
      `Confidence ${percent(item.confidence)}` +
      (item.threshold !== null ? ` · ${item.predicted_class} is accepted from ${percent(item.threshold)}` : "");
    const top = $("top3");
    top.replaceChildren(
      ...item.top.map(([name, p], index) => {
        const entry = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        button.dataset.answer = name;
        button.innerHTML = `<kbd>${index + 1}</kbd> `;
        button.append(`${name} `);
        const share = document.createElement("span");
        share.className = "share";
        share.textContent = percent(p);
        button.append(share);
        entry.append(button);
        return entry;
      })
    );
    const yours = $("yours");
    yours.hidden = !item.yours;
    if (item.yours) {
      yours.textContent = `You decided: ${describe(item.yours)}. Press a key to change it, or S to keep it.`;
    }
    state.classes = item.classes;
    renderClasses();
    state.shownAt = performance.now();
  }

  function describe(decision) {
    if (decision.outcome === "none_of_our_categories") return "none of our categories";
    if (decision.outcome === "unusable") return "unusable photo";
    return `${decision.outcome} ${decision.final_class}`;
  }

  // --- deciding ------------------------------------------------------------------

  async function decide(answer, note) {
    const item = state.queue.shift();
    if (!item) return;
    const seconds = (performance.now() - state.shownAt) / 1000;
    const entry = { item: item.id, image: item.image, outcome: "saving", final_class: answer };
    remember(entry);
    state.waiting = Math.max(0, state.waiting - 1);
    show();
    try {
      const result = await post(url(data.urls.decide, item.id), {
        answer: answer,
        note: note || "",
        seconds: Math.round(seconds * 10) / 10,
        next: wanted(state.queue.length < HELD ? 1 : 0),
      });
      Object.assign(entry, { outcome: result.decision.outcome, final_class: result.decision.final_class });
      say("");
      refill(result.items);
    } catch (error) {
      forget(entry);
      say(`Not saved (${item.name}): ${error.message}`, "error");
      if (error.code !== "claimed_by_other" && error.code !== "needs_lead") {
        state.queue.unshift(item); // still ours: decide it again
        show();
      }
    }
    renderRecent();
  }

  function refill(items) {
    const wasEmpty = state.queue.length === 0;
    take(items);
    if (wasEmpty && state.queue.length) show();
    else if (!state.queue.length) show();
  }

  async function skip() {
    const item = state.queue.shift();
    if (!item) return;
    state.skipped.add(item.id);
    sessionStorage.setItem(SKIPPED_KEY, JSON.stringify([...state.skipped].slice(-500)));
    show();
    try {
      refill((await post(url(data.urls.skip, item.id), wanted(state.queue.length < HELD ? 1 : 0))).items);
    } catch (error) {
      say(`Could not skip: ${error.message}`, "error");
    }
  }

  async function reopen(itemId) {
    try {
      const result = await post(url(data.urls.open, itemId), {});
      state.queue = state.queue.filter((item) => item.id !== itemId);
      state.queue.unshift(...result.items);
      state.skipped.delete(itemId);
      say("");
      show();
    } catch (error) {
      say(`Cannot open it again: ${error.message}`, "error");
    }
  }

  function undo() {
    const last = state.recent.find((entry) => entry.outcome !== "saving");
    if (last) reopen(last.item);
    else say("Nothing to undo yet.");
  }

  function remember(entry) {
    state.recent = [entry, ...state.recent.filter((other) => other.item !== entry.item)].slice(0, 10);
    renderRecent();
  }

  function forget(entry) {
    state.recent = state.recent.filter((other) => other !== entry);
  }

  function renderRecent() {
    $("recent").replaceChildren(
      ...state.recent.map((entry) => {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "recent-entry";
        button.dataset.reopen = entry.item;
        const thumb = document.createElement("img");
        thumb.src = url(data.urls.thumbnail, entry.image);
        thumb.alt = "";
        const label = document.createElement("span");
        label.textContent = entry.outcome === "saving" ? `saving… ${entry.final_class}` : describe(entry);
        button.append(thumb, label);
        li.append(button);
        return li;
      })
    );
  }

  // --- picking any class by name ---------------------------------------------------

  function matches() {
    const typed = $("class-filter").value.trim().toLowerCase().replace(/[\s_-]+/g, "");
    const plain = (name) => name.toLowerCase().replace(/[\s_-]+/g, "");
    const starts = state.classes.filter((name) => plain(name).startsWith(typed));
    const within = state.classes.filter((name) => !starts.includes(name) && plain(name).includes(typed));
    return [...starts, ...within];
  }

  function renderClasses() {
    const found = matches();
    state.highlighted = Math.min(state.highlighted, Math.max(found.length - 1, 0));
    const typing = $("class-filter").value !== "";
    $("class-list").replaceChildren(
      ...found.map((name, index) => {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.answer = name;
        button.textContent = name;
        button.className = typing && index === state.highlighted ? "highlighted" : "";
        li.append(button);
        return li;
      })
    );
    const blocked = state.classes.filter((name) => COMMANDS.has(name[0].toLowerCase()));
    $("picker-hint").textContent = blocked.length
      ? `Type / first for a name starting with a key of its own (${blocked.join(", ")}).`
      : "";
  }

  function openPicker(text) {
    const input = $("class-filter");
    input.value = text;
    state.highlighted = 0;
    input.focus();
    renderClasses();
  }

  function closePicker() {
    const input = $("class-filter");
    input.value = "";
    state.highlighted = 0;
    if (document.activeElement === input) input.blur();
    renderClasses();
  }

  $("class-filter").addEventListener("input", () => {
    state.highlighted = 0;
    renderClasses();
  });
  $("class-filter").addEventListener("keydown", (event) => {
    const found = matches();
    if (event.key === "Enter") {
      event.preventDefault();
      if (found.length) decide(found[state.highlighted] || found[0]);
    } else if (event.key === "Escape") {
      event.preventDefault();
      closePicker();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      state.highlighted = (state.highlighted + step + found.length) % Math.max(found.length, 1);
      renderClasses();
    }
  });

  // --- none of our categories: an optional note -------------------------------------

  function openNote() {
    $("note-form").hidden = false;
    $("note").value = "";
    $("note").focus();
  }

  function closeNote() {
    $("note-form").hidden = true;
    if (document.activeElement === $("note")) $("note").blur();
  }

  $("note-form").addEventListener("submit", (event) => {
    event.preventDefault();
    decide("none_of_our_categories", $("note").value.trim());
  });
  $("note").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closeNote();
    }
  });

  // --- the photo at full size ------------------------------------------------------

  function fullSize() {
    const item = state.queue[0];
    if (!item) return;
    const photo = $("full-size-photo");
    photo.classList.remove("enlarged");
    photo.onload = () => photo.classList.toggle("enlarged", photo.naturalHeight < 0.6 * window.innerHeight);
    photo.src = item.full_size;
    $("full-size").showModal();
  }

  // --- keys and clicks ---------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest && target.closest("input, select, textarea, dialog")) return; // their own keys
    const item = state.queue[0];
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "z") {
      event.preventDefault();
      undo();
      return;
    }
    if (!item) return;
    if (key === "Enter" || key === "a") {
      if (key === "Enter" && target.closest && target.closest("a, button")) return; // its own click
      event.preventDefault();
      decide(item.predicted_class);
    } else if (key === "1" || key === "2" || key === "3") {
      const choice = item.top[Number(key) - 1];
      if (choice) {
        event.preventDefault();
        decide(choice[0]);
      }
    } else if (key === "n") {
      event.preventDefault();
      openNote();
    } else if (key === "u") {
      event.preventDefault();
      decide("unusable");
    } else if (key === "s") {
      event.preventDefault();
      skip();
    } else if (key === "g") {
      event.preventDefault();
      goToGrid(item);
    } else if (key === "f") {
      event.preventDefault();
      fullSize();
    } else if (key === "/") {
      event.preventDefault();
      openPicker("");
    } else if (/^[a-z]$/.test(key)) {
      event.preventDefault();
      openPicker(key);
    }
  });

  function goToGrid(item) {
    const params = new URLSearchParams();
    params.set("class", item.predicted_class);
    if (data.queue.reason) params.set("reason", data.queue.reason);
    if (data.queue.run) params.set("run", data.queue.run);
    window.location.href = `${data.urls.grid}?${params}`;
  }

  document.addEventListener("click", (event) => {
    const answer = event.target.closest("[data-answer]");
    if (answer && state.queue[0]) return decide(answer.dataset.answer);
    const recent = event.target.closest("[data-reopen]");
    if (recent) return reopen(Number(recent.dataset.reopen));
  });
  $("accept").addEventListener("click", () => state.queue[0] && decide(state.queue[0].predicted_class));
  $("none").addEventListener("click", openNote);
  $("unusable").addEventListener("click", () => decide("unusable"));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("grid").addEventListener("click", () => state.queue[0] && goToGrid(state.queue[0]));
  $("photo-button").addEventListener("click", fullSize);
  $("unskip").addEventListener("click", async () => {
    state.skipped.clear();
    sessionStorage.removeItem(SKIPPED_KEY);
    try {
      refill((await post(data.urls.next, wanted(HELD))).items);
    } catch (error) {
      say(`Cannot load the queue: ${error.message}`, "error");
    }
    show();
  });

  // Claims last REVIEW_CLAIM_SECONDS: keep the held ones alive while the desk is open, and give
  // them back when it closes.
  async function renew() {
    try {
      const result = await post(data.urls.renew, { ids: state.queue.map((item) => item.id), queue: data.queue });
      state.waiting = result.waiting;
      $("waiting").textContent = result.waiting;
      if (!state.queue.length && result.waiting) refill((await post(data.urls.next, wanted(HELD))).items);
    } catch (error) {
      say(`Connection lost? ${error.message}`, "error");
    }
  }
  window.setInterval(renew, Math.max(10, data.claim_seconds / 3) * 1000);
  window.addEventListener("pagehide", () => {
    if (!state.queue.length) return;
    const form = new FormData();
    form.append("csrfmiddlewaretoken", csrf);
    for (const item of state.queue) form.append("ids", item.id);
    navigator.sendBeacon(data.urls.release, form);
  });

  async function start() {
    renderRecent();
    try {
      take((await post(data.urls.next, { ...wanted(HELD), resume: true })).items);
    } catch (error) {
      say(`Cannot load the queue: ${error.message}`, "error");
    }
    show();
    if (data.open) await reopen(data.open); // the photo a link asked for, first
  }
  start();
})();
