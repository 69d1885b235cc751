// Interactive circuit graph drawn from a run's edge_scores.json (MIB's edge-score format:
// "a3.h1->a4.h2<q>": {score, in_graph}). Nodes sit in columns by layer (input, then each
// layer's heads and MLP, then logits); an edge's width grows with |score| and its colour
// follows the site's one convention (blue above zero, red below). A slider prunes edges below
// a threshold; hovering or focusing a node shows its role (from the run's discovered
// components) and the summed scores of its shown edges; the threshold lives in the URL hash
// so a view can be shared. Everything the file says is data: text goes in through
// textContent and attributes only, never as markup.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var BLUE = "#2166ac", RED = "#b2182b";

  function el(name, attrs) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function parseNode(id) {
    var m;
    if (id === "input") return { id: id, col: 0, row: 0, label: "input" };
    if (id === "logits") return { id: id, col: Infinity, row: 0, label: "logits" };
    if ((m = /^a(\d+)\.h(\d+)$/.exec(id))) return { id: id, col: 2 * +m[1] + 1, row: +m[2], label: m[1] + "." + m[2] };
    if ((m = /^m(\d+)$/.exec(id))) return { id: id, col: 2 * +m[1] + 2, row: 0, label: "MLP " + m[1] };
    return null;
  }

  function parseEdges(data) {
    var edges = [];
    var raw = (data && typeof data.edges === "object" && data.edges) || {};
    Object.keys(raw).forEach(function (key) {
      var m = /^([^>]+)->([^<]+)(?:<([qkv])>)?$/.exec(key);
      var score = raw[key] && raw[key].score;
      if (!m || typeof score !== "number" || !isFinite(score)) return;
      var from = parseNode(m[1]), to = parseNode(m[2]);
      if (!from || !to) return;
      edges.push({ key: key, from: from, to: to, input: m[3] || "", score: score, inGraph: !!raw[key].in_graph });
    });
    return edges;
  }

  function hashState(name) {
    var m = new RegExp("(?:^|[#&])" + name + "=([0-9.eE+-]+)").exec(location.hash);
    return m ? parseFloat(m[1]) : null;
  }

  function setHashState(name, value) {
    var parts = location.hash.replace(/^#/, "").split("&").filter(function (p) { return p && p.indexOf(name + "=") !== 0; });
    parts.push(name + "=" + value);
    history.replaceState(null, "", "#" + parts.join("&"));
  }

  function draw(box, data) {
    var edges = parseEdges(data);
    var roles = {};
    try { roles = JSON.parse(box.getAttribute("data-roles") || "{}"); } catch (e) { roles = {}; }
    var stateName = box.getAttribute("data-state") || "edges";
    if (!edges.length) { box.textContent = "This run's edge scores list no edges."; return; }
    var nodes = {};
    edges.forEach(function (e) { nodes[e.from.id] = e.from; nodes[e.to.id] = e.to; });
    var cols = Object.keys(nodes).map(function (k) { return nodes[k].col; }).filter(isFinite);
    var lastCol = Math.max.apply(null, cols) + 1;
    var rows = Math.max.apply(null, Object.keys(nodes).map(function (k) { return nodes[k].row; })) + 1;
    var W = 80 + lastCol * 70, H = 40 + rows * 34;
    function pos(n) {
      var col = isFinite(n.col) ? n.col : lastCol;
      var single = n.id === "input" || n.id === "logits" || n.id.charAt(0) === "m";
      return { x: 40 + col * 70, y: single ? H / 2 : 24 + n.row * 34 };
    }
    var maxAbs = Math.max.apply(null, edges.map(function (e) { return Math.abs(e.score); })) || 1;
    var nonzero = edges.map(function (e) { return Math.abs(e.score); }).filter(function (s) { return s > 0; }).sort(function (a, b) { return b - a; });
    var initial = hashState(stateName);
    if (initial === null) initial = nonzero.length ? nonzero[Math.min(nonzero.length, 30) - 1] : 0;

    var controls = document.createElement("div");
    controls.className = "mikb-edges-controls";
    var label = document.createElement("label");
    var slider = document.createElement("input");
    slider.type = "range"; slider.min = "0"; slider.max = String(maxAbs); slider.step = String(maxAbs / 1000);
    slider.value = String(Math.min(initial, maxAbs));
    slider.setAttribute("aria-label", "minimum |score| of a shown edge");
    var readout = document.createElement("span");
    readout.className = "mikb-edges-readout";
    label.appendChild(document.createTextNode("Show edges with |score| ≥ "));
    label.appendChild(slider);
    controls.appendChild(label);
    controls.appendChild(readout);
    var info = document.createElement("p");
    info.className = "mikb-edges-info";
    info.setAttribute("aria-live", "polite");
    info.textContent = "Hover or focus a node for its role and scores.";

    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "mikb-edges-svg", role: "img",
                          "aria-label": "Edge scores of this run" });
    var edgeLayer = el("g"), nodeLayer = el("g");
    svg.appendChild(edgeLayer); svg.appendChild(nodeLayer);
    var drawn = edges.map(function (e) {
      var a = pos(e.from), b = pos(e.to), mid = (a.x + b.x) / 2;
      var path = el("path", { d: "M" + a.x + "," + a.y + " C" + mid + "," + a.y + " " + mid + "," + b.y + " " + b.x + "," + b.y,
                              fill: "none", stroke: e.score >= 0 ? BLUE : RED,
                              "stroke-width": (0.6 + 4.4 * Math.abs(e.score) / maxAbs).toFixed(2),
                              "stroke-dasharray": e.inGraph ? "" : "4 3", class: "mikb-edges-edge" });
      var title = el("title");
      title.textContent = e.from.label + " → " + e.to.label + (e.input ? " (" + e.input + ")" : "") + ": " + e.score.toPrecision(3)
        + (e.inGraph ? ", in the circuit" : "");
      path.appendChild(title);
      path.setAttribute("data-edge", e.key);
      edgeLayer.appendChild(path);
      return { edge: e, path: path };
    });
    Object.keys(nodes).forEach(function (id) {
      var n = nodes[id], p = pos(n);
      var g = el("g", { class: "mikb-edges-node", tabindex: "0", "data-node": id, transform: "translate(" + p.x + "," + p.y + ")" });
      var hasRole = Object.prototype.hasOwnProperty.call(roles, id);
      g.appendChild(el("circle", { r: 11, class: hasRole ? "mikb-edges-role" : "" }));
      var text = el("text", { "text-anchor": "middle", dy: "0.35em" });
      text.textContent = n.label.length > 6 ? n.label.replace("MLP ", "m") : n.label;
      g.appendChild(text);
      function show() {
        var shown = drawn.filter(function (d) { return !d.path.hasAttribute("hidden"); });
        var into = 0, out = 0;
        shown.forEach(function (d) { if (d.edge.to.id === id) into += d.edge.score; if (d.edge.from.id === id) out += d.edge.score; });
        info.textContent = n.label + (hasRole ? " — " + roles[id] : "") + ". Shown edges: in " + into.toPrecision(3)
          + ", out " + out.toPrecision(3) + ".";
        drawn.forEach(function (d) { d.path.classList.toggle("mikb-edges-near", d.edge.from.id === id || d.edge.to.id === id); });
      }
      g.addEventListener("mouseenter", show);
      g.addEventListener("focus", show);
      nodeLayer.appendChild(g);
    });

    function apply() {
      var t = parseFloat(slider.value) || 0, count = 0;
      drawn.forEach(function (d) {
        var visible = Math.abs(d.edge.score) >= t && d.edge.score !== 0;
        if (visible) { d.path.removeAttribute("hidden"); count++; } else d.path.setAttribute("hidden", "");
      });
      readout.textContent = t.toPrecision(2) + " — " + count + " of " + edges.length + " edges shown";
      box.setAttribute("data-shown", String(count));
    }
    slider.addEventListener("input", function () { apply(); setHashState(stateName, parseFloat(slider.value).toPrecision(3)); });
    box.textContent = "";
    box.appendChild(controls);
    var scroll = document.createElement("div");
    scroll.className = "mikb-edges-scroll";
    scroll.appendChild(svg);
    box.appendChild(scroll);
    box.appendChild(info);
    apply();
  }

  function init() {
    document.querySelectorAll(".mikb-edges[data-src]").forEach(function (box) {
      fetch(box.getAttribute("data-src"))
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { draw(box, data); })
        .catch(function (err) { box.textContent = "The edge scores could not be loaded (" + err + ")."; });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
