// rayop web view: live updates by polling the page's fragment with ETags, relative times, scaling plots.
// No build step and no dependency besides uPlot (vendored, see scripts/vendor-js.sh).
(function () {
  "use strict";

  var POLL_MS = 2000;
  var HIDDEN_POLL_MS = 10000;
  var COLORS = { desired: "#1f5fa8", ready: "#1b7f3b", ray: "#8a4f00", change: "#6b21a8" };
  var ACTOR_LETTER = { "Ray autoscaler": "A", "Ray Serve autoscaler": "S", HPA: "H", operator: "O", user: "U", unknown: "?" };

  var etag = null;
  var failing = false;
  window.rayopPlots = {};

  // -- relative times ---------------------------------------------------------------------------------
  function age(seconds) {
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d";
  }

  function clock(d) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function updateTimes(root) {
    var now = Date.now();
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      var d = new Date(t);
      if (!el.title) el.title = d.toLocaleString();
      el.textContent = el.dataset.rel === "age" ? age((now - t) / 1000) : d.toLocaleString();
    });
  }

  // -- plots ------------------------------------------------------------------------------------------
  function changesPlugin(changes) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = COLORS.change;
          ctx.fillStyle = COLORS.change;
          ctx.setLineDash([4, 3]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
          changes.forEach(function (c) {
            var x = Math.round(u.valToPos(c.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(ACTOR_LETTER[c.actor] || "U", x + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
          });
          ctx.restore();
        },
      },
    };
  }

  function buildPlot(el, data) {
    if (typeof uPlot === "undefined" || !data) return;
    var labels = (el.dataset.labels || "desired|ready|Ray-reported").split("|");
    var width = Math.max(240, el.clientWidth || 600);
    var stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    var opts = {
      width: width,
      height: 180,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max + 1)]; } } },
      axes: [{}, { label: el.dataset.unit || "workers", size: 50, values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? v : ""; }); } }],
      series: [
        {},
        { label: labels[0], stroke: COLORS.desired, width: 2, paths: stepped, points: { show: false } },
        { label: labels[1], stroke: COLORS.ready, width: 2, paths: stepped, points: { show: false } },
        { label: labels[2] || "-", show: !!labels[2], stroke: COLORS.ray, width: 2, dash: [6, 4], paths: stepped, points: { show: false } },
      ],
      plugins: [changesPlugin(data.changes || [])],
    };
    var u = new uPlot(opts, [data.x, data.desired, data.ready, data.ray], el);
    u.root.setAttribute("aria-hidden", "true");
    window.rayopPlots[el.id] = u;
  }

  function initPlots(root) {
    (root || document).querySelectorAll(".plot[data-plot]").forEach(function (el) {
      var section = el.closest("section[id]");
      var island = section && document.getElementById(section.id + "-data");
      if (!island) return;
      var all;
      try { all = JSON.parse(island.textContent); } catch (e) { return; }
      var old = window.rayopPlots[el.id];
      if (old) { old.destroy(); delete window.rayopPlots[el.id]; }
      el.textContent = "";
      buildPlot(el, all[el.dataset.plot]);
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(window.rayopPlots).forEach(function (id) {
        var u = window.rayopPlots[id], el = document.getElementById(id);
        if (el) u.setSize({ width: Math.max(240, el.clientWidth), height: 180 });
      });
    }, 150);
  });

  // -- live updates -----------------------------------------------------------------------------------
  function setLive(text) {
    var live = document.getElementById("live");
    if (live && live.textContent !== text) live.textContent = text;
  }

  function focusKey(el) {
    if (!el || el === document.body) return null;
    if (el.id) return "#" + CSS.escape(el.id);
    if (el.getAttribute("href")) return el.tagName.toLowerCase() + '[href="' + CSS.escape(el.getAttribute("href")) + '"]';
    return null;
  }

  function swap(main, html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    var fresh = tpl.content;
    var focused = focusKey(document.activeElement);
    var scrolls = {};
    main.querySelectorAll(".scroll[aria-labelledby]").forEach(function (s) { scrolls[s.getAttribute("aria-labelledby")] = s.scrollLeft; });
    var oldIds = Array.prototype.map.call(main.querySelectorAll(":scope > [data-live]"), function (e) { return e.id; });
    var newIds = Array.prototype.map.call(fresh.querySelectorAll(":scope > [data-live]"), function (e) { return e.id; });
    var changed = [];
    if (oldIds.join("|") === newIds.join("|") && oldIds.length) {
      newIds.forEach(function (id) {
        var cur = document.getElementById(id), next = fresh.getElementById ? fresh.getElementById(id) : fresh.querySelector("#" + CSS.escape(id));
        if (cur && next && cur.outerHTML !== next.outerHTML) {
          cur.replaceWith(next);
          changed.push(next);
        }
      });
    } else {
      main.replaceChildren(fresh);
      changed.push(main);
    }
    changed.forEach(function (el) { updateTimes(el); initPlots(el); });
    main.querySelectorAll(".scroll[aria-labelledby]").forEach(function (s) {
      var k = s.getAttribute("aria-labelledby");
      if (scrolls[k]) s.scrollLeft = scrolls[k];
    });
    if (focused && !document.activeElement.closest("#main")) {
      var again = document.querySelector(focused);
      if (again) again.focus({ preventScroll: true });
    }
  }

  function poll() {
    var main = document.getElementById("main");
    if (!main || !main.dataset.poll) return;
    var url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    var headers = {};
    if (etag) headers["If-None-Match"] = etag;
    fetch(url.toString(), { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { location.assign("/login"); return null; }
        if (r.status === 304) return null;
        etag = r.headers.get("ETag");
        return r.text();
      })
      .then(function (html) {
        if (failing) { failing = false; setLive("Live updates on"); }
        if (html !== null && html !== undefined) swap(main, html);
        document.body.dataset.updated = String(Date.now());
      })
      .catch(function () {
        if (!failing) { failing = true; setLive("Connection to the view lost; retrying"); }
      })
      .finally(function () { setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.getElementById("main");
    if (main && main.dataset.etag) etag = main.dataset.etag;
    updateTimes(document);
    initPlots(document);
    setInterval(function () { updateTimes(document); }, 10000);
    setTimeout(poll, POLL_MS);
  });
})();
