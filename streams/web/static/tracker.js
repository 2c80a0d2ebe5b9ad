// shopstream browser tracker: docs/storefront.md. No dependencies; served minified by the worker.
// <script src="https://WORKER/tracker.js" data-key="PUBLIC_KEY" data-user="CUSTOMER_ID"></script>
(function (w, d) {
  "use strict";
  var me = d.currentScript || {};
  var ds = me.dataset || {};
  var base = ds.endpoint || (me.src ? new URL(me.src, d.baseURI).origin : "");
  var key = ds.key || "";
  var ls = w.localStorage, SESSION_MS = 18e5, queue = [], timer = 0;
  function rid() {
    var c = w.crypto;
    return c && c.randomUUID ? c.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function get(k) { try { return ls.getItem("ss_" + k); } catch (e) { return null; } }
  function put(k, v) { try { ls.setItem("ss_" + k, v); } catch (e) { /* private mode */ } }
  var anon = get("anon") || "anon-" + rid();
  put("anon", anon);
  var user = ds.user || get("user") || anon;
  function url(path, q) {
    return base + path + "?" + (key ? "key=" + encodeURIComponent(key) + "&" : "") + (q || "");
  }
  // a session ends after 30 minutes without an event; a new one starts with session_start
  function session() {
    var now = Date.now(), id = get("sid"), last = +get("slast") || 0, fresh = !id || now - last > SESSION_MS;
    if (fresh) { id = "s-" + rid(); put("sid", id); }
    put("slast", String(now));
    if (fresh) queue.push({ event_id: rid(), type: "session_start", user_id: user, session_id: id, ts: now });
    return id;
  }
  function track(type, fields) {
    var sid = session(), e = { event_id: rid(), type: type, user_id: user, session_id: sid, ts: Date.now() };
    for (var f in fields || {}) if (fields[f] != null) e[f] = fields[f];
    queue.push(e);
    if (queue.length >= 20) return flush();
    clearTimeout(timer);
    timer = setTimeout(flush, 1000);
    return Promise.resolve();
  }
  // text/plain keeps the request CORS-simple (no preflight); keepalive lets it outlive the page
  function flush(beacon) {
    clearTimeout(timer);
    if (!queue.length) return Promise.resolve();
    var body = JSON.stringify(queue.splice(0, 500));
    if (beacon && navigator.sendBeacon && navigator.sendBeacon(url("/v1/events"), new Blob([body], { type: "text/plain" }))) {
      return Promise.resolve();
    }
    return fetch(url("/v1/events"), { method: "POST", body: body, keepalive: body.length < 6e4,
      headers: { "Content-Type": "text/plain" } }).then(function (r) { return r.json(); })
      .catch(function () { /* the page goes on; events are best effort from a browser */ });
  }
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") flush(true); });
  w.addEventListener("pagehide", function () { flush(true); });
  function item(id, o) {
    o = o || {};
    // o.rec_id: the rec_id of the recommendation this view, cart or purchase followed
    return { item_id: String(id), category: o.category, price: o.price, quantity: o.quantity, rec_id: o.rec_id };
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }
  w.shopstream = {
    page: function () { session(); return flush(); },
    product: function (id, o) { return track("view", item(id, o)); },
    addToCart: function (id, o) { return track("add_to_cart", item(id, o)); },
    removeFromCart: function (id, o) { return track("remove_from_cart", item(id, o)); },
    purchase: function (items) {
      items.forEach(function (i) { track("purchase", item(i.item_id, i)); });
      return flush();
    },
    search: function (q) { return track("search", { query: String(q).slice(0, 1024) }); },
    identify: function (customer) {
      customer = String(customer);
      if (customer === user) return Promise.resolve();
      if (user === anon) queue.push({ type: "identify", anonymous_id: anon, user_id: customer });
      user = customer;
      put("user", customer);
      return flush();
    },
    logout: function () { user = anon; put("user", ""); },
    user: function () { return user; },
    session: session,
    flush: flush,
    // fetch this visitor's recommendations and render them into `el` (a node or a selector);
    // o.k, o.category, o.render(item) -> HTML (default: the item id); resolves to the items
    recommend: function (el, o) {
      o = o || {};
      el = typeof el === "string" ? d.querySelector(el) : el;
      var q = "k=" + (o.k || 5) + (o.category ? "&category=" + encodeURIComponent(o.category) : "");
      return flush().then(function () { return fetch(url("/recommendations/" + encodeURIComponent(user), q)); })
        .then(function (r) { return r.json(); })
        .then(function (res) {
          var items = res.items || [];
          if (el) {
            el.innerHTML = "<ul class=\"shopstream-recs\">" + items.map(function (i) {
              return "<li data-item-id=\"" + esc(i.item_id) + "\">" + (o.render ? o.render(i) : esc(i.item_id)) + "</li>";
            }).join("") + "</ul>";
            el.setAttribute("data-shopstream-items", items.map(function (i) { return i.item_id; }).join(" "));
          }
          return items;
        });
    }
  };
})(window, document);
