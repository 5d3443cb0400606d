// appman-package-server's page, enhanced: uploads (file input or drop, with progress),
// removals (with a confirmation) and live refresh. Everything goes through the public API
// (PUT /package/upload, POST /package/remove, GET /package/list); the list itself is the
// server-rendered HTML, fetched again when the store changes. Text from the server is only
// ever inserted with textContent.
"use strict";

(function () {
  const TOKEN_KEY = "amps-upload-token";
  const results = document.getElementById("results");
  const progress = document.getElementById("progress");

  function say(text, ok) {
    const item = document.createElement("li");
    item.className = ok ? "ok" : "fail";
    item.textContent = text;
    results.prepend(item);
    while (results.children.length > 8) results.lastChild.remove();
  }

  // The token lives in this tab's session only.
  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function askToken(again) {
    const given = window.prompt(again
      ? "That token was refused. The server's upload token:"
      : "This server needs its upload token for changes:");
    if (given) sessionStorage.setItem(TOKEN_KEY, given.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
    return Boolean(given);
  }
  function authorize(setHeader) {
    const t = token();
    if (t) setHeader("Authorization", "Bearer " + t);
  }

  function uploadWords(file, answer) {
    if (answer.status === "ok") {
      const what = answer.id + " (" + answer.architecture + ")";
      if (answer.result === "added") return ["Added " + what, true];
      if (answer.result === "updated") return ["Updated " + what, true];
      return ["No changes: " + what + " is already there", true];
    }
    return ["Upload of " + file.name + " failed: " + (answer.message || "unknown error"), false];
  }

  function upload(file, retried) {
    return new Promise(function (resolve) {
      const request = new XMLHttpRequest();
      request.open("PUT", "/package/upload");
      authorize(function (n, v) { request.setRequestHeader(n, v); });
      progress.hidden = false;
      progress.value = 0;
      request.upload.onprogress = function (event) {
        if (event.lengthComputable) progress.value = event.loaded / event.total;
      };
      request.onload = function () {
        progress.hidden = true;
        if (request.status === 401 && !retried && askToken(Boolean(token()))) {
          resolve(upload(file, true));
          return;
        }
        let answer;
        try { answer = JSON.parse(request.responseText); } catch (e) { answer = { status: "fail", message: "HTTP " + request.status }; }
        const [text, ok] = uploadWords(file, answer);
        say(text, ok);
        resolve();
      };
      request.onerror = function () {
        progress.hidden = true;
        say("Upload of " + file.name + " failed: the connection broke", false);
        resolve();
      };
      request.send(file);
    });
  }

  async function uploadAll(files) {
    for (const file of files) await upload(file, false);
    refresh();
  }

  async function remove(id, architecture, retried) {
    const headers = { "Content-Type": "application/x-www-form-urlencoded" };
    authorize(function (n, v) { headers[n] = v; });
    const body = new URLSearchParams({ id: id, architecture: architecture }).toString();
    let response;
    try {
      response = await fetch("/package/remove", { method: "POST", headers: headers, body: body });
    } catch (e) {
      say("Removing " + id + " failed: the connection broke", false);
      return;
    }
    if (response.status === 401 && !retried && askToken(Boolean(token()))) return remove(id, architecture, true);
    let answer = {};
    try { answer = await response.json(); } catch (e) { /* reported below */ }
    if (answer.status === "ok") say("Removed " + id + " (" + architecture + ")", true);
    else say("Removing " + id + " failed: " + (answer.message || "no such package"), false);
    refresh();
  }

  // Live refresh: the list's ETag says when the store changed; then the page's own HTML
  // for the same filters replaces the package section.
  let listTag = null;
  async function refresh() {
    try {
      const page = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!page.ok) return;
      const parsed = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = parsed.getElementById("packages");
      const current = document.getElementById("packages");
      if (fresh && current) {
        current.replaceWith(document.adoptNode(fresh));
        wire();
      }
    } catch (e) { /* the next poll tries again */ }
  }
  async function poll() {
    try {
      const headers = listTag ? { "If-None-Match": listTag } : {};
      const answer = await fetch("/package/list", { headers: headers, cache: "no-store" });
      const tag = answer.headers.get("ETag");
      if (answer.status === 200 && listTag !== null && tag !== listTag) await refresh();
      if (answer.status === 200) listTag = tag;
    } catch (e) { /* server away: try again later */ }
  }

  function wire() {
    for (const button of document.querySelectorAll("button.remove")) {
      button.hidden = false;
      if (button.dataset.wired) continue;
      button.dataset.wired = "1";
      button.addEventListener("click", function () {
        const id = button.dataset.id, architecture = button.dataset.architecture;
        if (window.confirm("Remove " + id + " (" + architecture + ") from the store?")) remove(id, architecture, false);
      });
    }
  }

  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  input.addEventListener("change", function () {
    const files = Array.from(input.files);
    input.value = "";
    uploadAll(files);
  });
  drop.addEventListener("dragover", function (event) { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll(Array.from(event.dataTransfer.files));
  });
  wire();
  poll();
  window.setInterval(poll, 3000);
})();
