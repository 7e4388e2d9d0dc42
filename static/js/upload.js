// The upload page: the chosen photos listed with their names, sizes and thumbnails (drop them on
// the page or choose them), the limits checked before anything is sent, and the upload's progress.
// Without JavaScript the form posts as it is.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("id_photos");
  const zone = document.getElementById("dropzone");
  const list = document.getElementById("file-list");
  const summary = document.getElementById("choice-summary");
  const problem = document.getElementById("choice-error");
  const button = document.getElementById("upload-button");
  const maxFiles = Number(form.dataset.maxFiles);
  const maxBytes = Number(form.dataset.maxBytes);
  const maxMb = form.dataset.maxMb;
  const TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
  let files = [];
  let thumbnails = [];

  function readableSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  function problems() {
    const found = [];
    if (files.length > maxFiles) {
      found.push(`${files.length} photos chosen: at most ${maxFiles} at a time. Remove ${files.length - maxFiles}, or upload them in several goes.`);
    }
    const big = files.filter((file) => file.size > maxBytes);
    if (big.length) {
      found.push(`${big.length === 1 ? big[0].name + " is" : big.length + " photos are"} over ${maxMb}: remove ${big.length === 1 ? "it" : "them"} (marked below).`);
    }
    return found;
  }

  function render() {
    for (const url of thumbnails) URL.revokeObjectURL(url);
    thumbnails = [];
    const total = files.reduce((sum, file) => sum + file.size, 0);
    summary.textContent = files.length ? `${files.length} photo${files.length === 1 ? "" : "s"} chosen, ${readableSize(total)} in all` : "";
    const found = problems();
    problem.hidden = !found.length;
    problem.textContent = found.join(" ");
    button.disabled = !files.length || found.length > 0;
    list.replaceChildren(
      ...files.map((file, index) => {
        const row = document.createElement("li");
        row.className = file.size > maxBytes ? "too-big" : "";
        const picture = document.createElement("img");
        picture.alt = "";
        picture.className = "thumb";
        if (TYPES.has(file.type) && file.size <= maxBytes) {
          const url = URL.createObjectURL(file);
          thumbnails.push(url);
          picture.src = url;
        }
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = file.name;
        const size = document.createElement("span");
        size.className = "size muted";
        size.textContent = readableSize(file.size) + (file.size > maxBytes ? ` (over ${maxMb})` : "");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link remove";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", `Remove ${file.name}`);
        remove.addEventListener("click", () => {
          files.splice(index, 1);
          sync();
        });
        row.append(picture, name, size, remove);
        return row;
      })
    );
  }

  // The input keeps the list too, so that the form still posts it without this script's upload.
  function sync() {
    const transfer = new DataTransfer();
    for (const file of files) transfer.items.add(file);
    input.files = transfer.files;
    render();
  }

  function add(chosen) {
    const known = new Set(files.map((file) => `${file.name}/${file.size}/${file.lastModified}`));
    for (const file of chosen) {
      const key = `${file.name}/${file.size}/${file.lastModified}`;
      if (!known.has(key)) files.push(file);
      known.add(key);
    }
    sync();
  }

  input.addEventListener("change", () => {
    files = [];
    add(input.files);
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    add(event.dataTransfer.files);
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (problems().length || !files.length) return render();
    const body = new FormData();
    body.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    for (const file of files) body.append("photos", file, file.name);
    const bar = document.getElementById("upload-bar");
    const text = document.getElementById("upload-text");
    document.getElementById("upload-progress").hidden = false;
    button.disabled = true;
    const request = new XMLHttpRequest();
    request.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable) return;
      bar.value = (100 * progress.loaded) / progress.total;
      text.textContent = `Uploading: ${readableSize(progress.loaded)} of ${readableSize(progress.total)}`;
    });
    request.upload.addEventListener("load", () => {
      bar.removeAttribute("value"); // the server is storing and checking the photos
      text.textContent = "Uploaded; checking and storing the photos…";
    });
    request.addEventListener("load", () => {
      const landed = request.responseURL ? new URL(request.responseURL).pathname : location.pathname;
      if (request.status === 200 && landed !== location.pathname) {
        window.location.assign(request.responseURL); // the run's page
        return;
      }
      // The form again, with the server's reasons (or an error page): show it as the page.
      document.open();
      document.write(request.responseText);
      document.close();
    });
    request.addEventListener("error", () => {
      text.textContent = "The connection was lost during the upload: nothing was stored. Try again.";
      button.disabled = false;
    });
    request.open("POST", form.getAttribute("action") || location.pathname);
    request.send(body);
  });
})();
