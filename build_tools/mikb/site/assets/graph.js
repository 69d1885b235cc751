// mikb graph explorer: draws the precomputed layout as SVG with pan, zoom, type toggles and a
// colour legend, highlight-by-name, labels once zoomed in, neighbours highlighted on hover,
// and a side panel (a click or tap selects a node and lists its neighbours; the panel's link
// opens its page). No library: the layout is computed at build time, so the browser only draws.
(function () {
  "use strict";
  var scriptUrl = document.currentScript ? document.currentScript.src : "";
  var siteRoot = scriptUrl ? new URL("../", scriptUrl) : new URL("./", document.baseURI);
  var COLOURS = { problem: "#3f7fbf", circuit: "#d9822b", paper: "#5a9e4b", model: "#8e5ab8", component: "#b84a4a" };
  var SVGNS = "http://www.w3.org/2000/svg";

  function pageUrl(md) {
    if (!md) return null;
    var path = md === "index.md" ? "" : md.replace(/index\.md$/, "").replace(/\.md$/, "/");
    return new URL(path, siteRoot).href;
  }

  function el(name, attrs) {
    var e = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function init(container) {
    var info = document.querySelector(".mikb-graph-info");
    fetch(new URL(container.getAttribute("data-src"), siteRoot).href)
      .then(function (r) { return r.json(); })
      .then(function (data) { draw(container, data, info); })
      .catch(function (err) { container.textContent = "Graph could not be loaded: " + err; });
  }

  function draw(container, data, info) {
    var svg = el("svg", { "class": "mikb-graph-svg", role: "img", "aria-label": "Knowledge graph" });
    var view = el("g", { "class": "mikb-graph-view" });
    svg.appendChild(view);
    container.appendChild(svg);
    var byId = {};
    data.nodes.forEach(function (n) { byId[n.id] = n; });
    var edgeLayer = el("g", { "class": "mikb-graph-edges" });
    var nodeLayer = el("g", { "class": "mikb-graph-nodes" });
    view.appendChild(edgeLayer);
    view.appendChild(nodeLayer);
    var edgeEls = [];
    data.edges.forEach(function (e) {
      var a = byId[e.s], b = byId[e.t];
      if (!a || !b) return;
      var line = el("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, "class": "mikb-graph-edge mikb-graph-edge-" + e.type });
      line.__ends = [a, b];
      edgeLayer.appendChild(line);
      edgeEls.push(line);
    });
    var nodeEls = [];
    var neighbours = {};
    data.edges.forEach(function (e) {
      (neighbours[e.s] = neighbours[e.s] || []).push(e.t);
      (neighbours[e.t] = neighbours[e.t] || []).push(e.s);
    });
    var labelLayer = el("g", { "class": "mikb-graph-labels" });
    var panel = document.querySelector(".mikb-graph-panel");
    data.nodes.forEach(function (n) {
      var radius = n.type === "problem" ? 5 : n.type === "component" ? 4 : 8;
      var g = el("g", { "class": "mikb-graph-node", "data-type": n.type, "data-id": n.id, tabindex: "0" });
      // An invisible, larger circle is the touch target; the visible one stays small.
      g.appendChild(el("circle", { cx: n.x, cy: n.y, r: 14, "class": "mikb-graph-hitarea" }));
      g.appendChild(el("circle", { cx: n.x, cy: n.y, r: radius, fill: COLOURS[n.type] || "#777" }));
      var title = el("title", {});
      title.textContent = n.type + ": " + n.label;
      g.appendChild(title);
      var text = el("text", { x: n.x + radius + 3, y: n.y + 3, "class": "mikb-graph-label", "data-type": n.type });
      text.textContent = n.label.length > 48 ? n.label.slice(0, 47) + "…" : n.label;
      labelLayer.appendChild(text);
      g.addEventListener("click", function () { select(n); });
      g.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter") { var url = pageUrl(n.url); if (url) window.location.href = url; }
        if (ev.key === " ") { ev.preventDefault(); select(n); }
      });
      g.addEventListener("mouseenter", function () { focus(n); if (info) info.textContent = n.type + ": " + n.label; });
      g.addEventListener("mouseleave", function () { focus(null); });
      g.__node = n;
      g.__label = text;
      nodeLayer.appendChild(g);
      nodeEls.push(g);
    });
    view.appendChild(labelLayer);
    var elById = {};
    nodeEls.forEach(function (g) { elById[g.__node.id] = g; });

    function focus(n) {
      var near = {};
      if (n) { near[n.id] = true; (neighbours[n.id] || []).forEach(function (id) { near[id] = true; }); }
      svg.classList.toggle("mikb-graph-focused", !!n);
      nodeEls.forEach(function (g) { g.classList.toggle("mikb-graph-near", !!near[g.__node.id]); g.__label.classList.toggle("mikb-graph-near", !!near[g.__node.id]); });
      edgeEls.forEach(function (line) {
        line.classList.toggle("mikb-graph-near", !!n && (line.__ends[0].id === n.id || line.__ends[1].id === n.id));
      });
    }

    function select(n) {
      if (!panel) { var direct = pageUrl(n.url); if (direct) window.location.href = direct; return; }
      panel.hidden = false;
      panel.textContent = "";
      var heading = document.createElement("p");
      heading.className = "mikb-graph-panel-title";
      heading.textContent = n.type + ": " + n.label;
      panel.appendChild(heading);
      var url = pageUrl(n.url);
      if (url) {
        var open = document.createElement("a");
        open.href = url;
        open.className = "mikb-graph-open";
        open.textContent = "Open this " + n.type + "'s page";
        panel.appendChild(open);
      }
      var ids = (neighbours[n.id] || []).filter(function (id, i, all) { return all.indexOf(id) === i; });
      var caption = document.createElement("p");
      caption.textContent = ids.length + " linked " + (ids.length === 1 ? "entry" : "entries") + ":";
      panel.appendChild(caption);
      var list = document.createElement("ul");
      ids.slice(0, 40).forEach(function (id) {
        var other = byId[id];
        if (!other) return;
        var item = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = other.type + ": " + other.label;
        button.addEventListener("click", function () { select(other); });
        item.appendChild(button);
        list.appendChild(item);
      });
      panel.appendChild(list);
      nodeEls.forEach(function (g) { g.classList.toggle("mikb-graph-selected", g.__node.id === n.id); });
      focus(n);
    }

    var xs = data.nodes.map(function (n) { return n.x; }), ys = data.nodes.map(function (n) { return n.y; });
    var minX = Math.min.apply(null, xs.concat([0])) - 30, maxX = Math.max.apply(null, xs.concat([0])) + 30;
    var minY = Math.min.apply(null, ys.concat([0])) - 30, maxY = Math.max.apply(null, ys.concat([0])) + 30;
    var initial = { x: minX, y: minY, w: maxX - minX, h: maxY - minY };
    var box = { x: initial.x, y: initial.y, w: initial.w, h: initial.h };
    function apply() {
      svg.setAttribute("viewBox", [box.x, box.y, box.w, box.h].join(" "));
      // Labels appear once zoomed in far enough to read them, at a size that stays legible.
      svg.classList.toggle("mikb-graph-zoomed", box.w < initial.w / 3);
      labelLayer.setAttribute("font-size", String(Math.max(2, box.w / 90)));
    }
    function zoom(factor, cx, cy) {
      cx = cx === undefined ? box.x + box.w / 2 : cx;
      cy = cy === undefined ? box.y + box.h / 2 : cy;
      box.x = cx - (cx - box.x) * factor; box.y = cy - (cy - box.y) * factor;
      box.w *= factor; box.h *= factor;
      apply();
    }
    apply();
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = svg.getBoundingClientRect();
      var cx = box.x + (ev.clientX - r.left) / r.width * box.w, cy = box.y + (ev.clientY - r.top) / r.height * box.h;
      zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
    }, { passive: false });
    var drag = null;
    svg.addEventListener("pointerdown", function (ev) {
      if (ev.target.closest && ev.target.closest(".mikb-graph-node")) return;
      drag = { x: ev.clientX, y: ev.clientY, bx: box.x, by: box.y };
      svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      var r = svg.getBoundingClientRect();
      box.x = drag.bx - (ev.clientX - drag.x) / r.width * box.w;
      box.y = drag.by - (ev.clientY - drag.y) / r.height * box.h;
      apply();
    });
    svg.addEventListener("pointerup", function () { drag = null; });
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        var how = b.getAttribute("data-zoom");
        if (how === "in") zoom(1 / 1.3);
        else if (how === "out") zoom(1.3);
        else { box = { x: initial.x, y: initial.y, w: initial.w, h: initial.h }; apply(); }
      });
    });
    function refresh() {
      var hidden = {};
      document.querySelectorAll(".mikb-graph-controls input[data-type]").forEach(function (cb) {
        if (!cb.checked) hidden[cb.getAttribute("data-type")] = true;
      });
      var q = (document.querySelector(".mikb-graph-search") || { value: "" }).value.trim().toLowerCase();
      nodeEls.forEach(function (g) {
        var n = g.__node;
        g.style.display = hidden[n.type] ? "none" : "";
        g.__label.style.display = hidden[n.type] ? "none" : "";
        g.classList.toggle("mikb-graph-hit", !!q && n.label.toLowerCase().indexOf(q) !== -1);
        g.classList.toggle("mikb-graph-dim", !!q && n.label.toLowerCase().indexOf(q) === -1);
      });
      edgeEls.forEach(function (line) {
        var ends = line.__ends;
        line.style.display = hidden[ends[0].type] || hidden[ends[1].type] ? "none" : "";
      });
    }
    document.querySelectorAll(".mikb-graph-controls input[data-type]").forEach(function (cb) {
      var swatch = document.createElement("span");
      swatch.className = "mikb-graph-swatch";
      swatch.style.background = COLOURS[cb.getAttribute("data-type")] || "#777";
      cb.parentNode.insertBefore(swatch, cb.nextSibling);
    });
    document.querySelectorAll(".mikb-graph-controls input").forEach(function (i) {
      i.addEventListener("input", refresh); i.addEventListener("change", refresh);
    });
    container.setAttribute("data-ready", "true");
    container.setAttribute("data-nodes", String(data.nodes.length));
  }

  function start() { document.querySelectorAll("#mikb-graph").forEach(init); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
