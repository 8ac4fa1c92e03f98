// Live update: after each pass the server sends an event, and the page swaps its
// content for the new rendering (same address), without a reload. Without this script,
// or without EventSource, the page is the same, only as of when it was loaded.
"use strict";
(function () {
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  let shown = document.body.dataset.version;
  let busy = false;
  async function refresh(version) {
    if (busy || version === shown) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const next = new DOMParser().parseFromString(await response.text(), "text/html");
      const main = next.querySelector("main");
      if (main) {
        document.querySelector("main").replaceWith(document.adoptNode(main));
        document.title = next.title;
        shown = next.body.dataset.version || version;
        document.body.dataset.version = shown;
      }
    } finally {
      busy = false;
    }
  }
  const events = new EventSource("/events");
  events.addEventListener("pass", (event) => { refresh(event.data); });
})();
