// live.js: live stock and order updates over Server-Sent Events (GET
// /events). Pages work without it; with it, numbers change in place.
(() => {
  "use strict";
  if (!window.EventSource) return;
  const line = document.querySelector("[data-live]");
  const via = line && line.querySelector("[data-live-via]");
  const notice = line && line.querySelector("[data-live-notice]");
  let last = "";

  const show = (el, text) => { if (el) el.textContent = text; };

  // seq counts stock events; an element remembers the one that last set
  // it, so that a read of /api/stock started before it does not undo it.
  let seq = 0;

  const onStock = (d) => {
    seq++;
    document.querySelectorAll('[data-live-stock="' + d.product_id + '"]').forEach((el) => {
      el.textContent = String(d.stock);
      el.dataset.liveSeq = String(seq);
      const card = el.closest("[data-live-card]");
      if (card) card.hidden = false;
    });
  };

  const onOrder = (d) => {
    const order = document.querySelector('[data-order-id="' + d.order_id + '"]');
    if (!order) return;
    let status = order.querySelector("[data-live-order-status]");
    if (!status) {
      const p = document.createElement("p");
      p.className = "order-status";
      p.append("Status: ");
      status = document.createElement("strong");
      status.setAttribute("data-live-order-status", "");
      p.append(status);
      order.querySelector("h1").after(p);
    }
    status.textContent = d.status;
  };

  // resync reads every product's stock now and shows it where the page
  // shows stock; only is a filter on which elements to fill.
  const resync = (only) => {
    const from = seq;
    fetch("/api/stock").then((r) => r.ok ? r.json() : null).then((d) => {
      if (!d) return;
      document.querySelectorAll("[data-live-stock]").forEach((el) => {
        const card = el.closest("[data-live-card]");
        if (only && !only(card)) return;
        if (Number(el.dataset.liveSeq || 0) > from) return; // an event is newer
        const n = d.stock[el.getAttribute("data-live-stock")];
        if (n === undefined) return;
        el.textContent = String(n);
        if (card) card.hidden = false;
      });
    }).catch(() => {});
  };

  const connect = () => {
    // A new EventSource does not send Last-Event-ID by itself: the query
    // carries it (the browser's own reconnects send the header).
    const es = new EventSource(last ? "/events?last_event_id=" + encodeURIComponent(last) : "/events");
    const track = (name, fn) => es.addEventListener(name, (e) => {
      if (e.lastEventId) last = e.lastEventId;
      fn(JSON.parse(e.data));
    });
    track("ready", (d) => {
      if (line) line.hidden = false;
      show(via, "(stream on " + d.replica + ")");
      show(notice, "");
    });
    track("stock", onStock);
    track("order", onOrder);
    track("notice", (d) => {
      show(notice, d.message);
      // Back after a pause, or told some updates are gone: an event may
      // have been lost meanwhile (one that waited in a replica that died
      // before Redis answered), so read every stock afresh.
      if (d.state === "live" || d.state === "missed") resync();
    });
    es.onerror = () => {
      // A 503 (the replica holds as many streams as it may) ends an
      // EventSource for good: try again later, from where it was.
      if (es.readyState === EventSource.CLOSED) {
        show(notice, "Live updates are reconnecting…");
        setTimeout(connect, 5000);
      }
    };
  };
  connect();

  // The catalog's cards carry no stock of their own: read it once, and
  // fill only the cards no event has filled meanwhile (an event is newer).
  if (document.querySelector("[data-live-card][hidden]")) {
    resync((card) => card && card.hidden);
  }
})();
