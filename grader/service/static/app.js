// The service's only script (served from the service itself: the pages allow no inline script).
// - the login page: a personal link's token (after `#`) fills the form and logs in, then
//   leaves the address bar, so it is in no history and was never sent in a URL;
// - the upload page: a notebook dropped on the drop zone goes into the form's file input;
// - the status page: the state pushed by the server (Server-Sent Events; else asked every
//   second) until the feedback is ready, then the feedback page.
"use strict";

function setupLogin() {
  const input = document.getElementById("token");
  if (!input || location.hash.length < 2) return;
  input.value = decodeURIComponent(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  input.form.submit();
}

function setupDrop() {
  const zone = document.getElementById("drop");
  const input = document.getElementById("file");
  const picked = document.getElementById("picked");
  if (!zone || !input) return;
  const show = () => { picked.textContent = input.files.length ? input.files[0].name : ""; };
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      show();
    }
  });
  input.addEventListener("change", show);
}

function show(box, s) {
  box.textContent = s.message;
  box.className = "state " + s.state;
  if (s.state === "done") location.href = s.feedback_url;
}

function setupStatus() {
  const box = document.getElementById("state");
  if (!box || !box.dataset.poll) return;
  if (window.EventSource) {  // pushed by the server as it changes; polling where there is none
    const events = new EventSource(box.dataset.poll + "/events");
    events.onmessage = (e) => { const s = JSON.parse(e.data); if (s.state === "done") events.close(); show(box, s); };
    return;
  }
  const poll = async () => {
    try {
      const r = await fetch(box.dataset.poll, {credentials: "same-origin", cache: "no-store"});
      const s = await r.json();
      if (r.ok) {
        show(box, s);
        if (s.state === "done") return;
      }
    } catch (e) { /* the server restarting: ask again */ }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 500);
}

document.addEventListener("DOMContentLoaded", () => { setupLogin(); setupDrop(); setupStatus(); });
