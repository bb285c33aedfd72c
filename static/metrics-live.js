// metrics-live.js: /metrics/live keeps itself current from
// /metrics/live/stream (server-sent events carrying the page's content),
// instead of reloading. Without it, a meta refresh in <noscript> reloads.
(() => {
  "use strict";
  const main = document.querySelector("[data-live-stream]");
  if (!main || !window.EventSource) return;
  const connect = () => {
    const es = new EventSource(main.getAttribute("data-live-stream"));
    es.addEventListener("live", (e) => { main.innerHTML = JSON.parse(e.data); });
    // A stream that could not open (a 503) does not come back by itself.
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) setTimeout(connect, 5000); };
  };
  connect();
})();
