// mikb site behaviour: problem-table filters (kept in the URL) and interactive figures.
// Plain browser JavaScript with no dependencies, so the site works from any static host
// and offline. Paths are resolved from this script's own URL, which MkDocs sets correctly
// for every page depth.
(function () {
  "use strict";
  var scriptUrl = document.currentScript ? document.currentScript.src : "";
  var assetsBase = scriptUrl ? new URL("./", scriptUrl) : new URL("assets/", document.baseURI);

  // A difficulty letter matches every mark whose range includes it: "B" finds A-B, B, B-C, B-D.
  function difficultyMatches(mark, letter) {
    if (letter === "unknown") return mark === "unknown";
    var ends = mark.toUpperCase().split("-");
    if (ends.length === 1) return ends[0] === letter.toUpperCase();
    var l = letter.toUpperCase();
    return ends[0] <= l && l <= ends[1];
  }

  function initFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    if (!table) return;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains("mikb-empty"); });
    var empty = body.querySelector("tr.mikb-empty");
    var controls = Array.prototype.slice.call(box.querySelectorAll("[data-filter]"));
    var counter = box.querySelector(".mikb-count");
    var params = new URLSearchParams(window.location.search);
    function valueOf(c) { return c.type === "checkbox" ? (c.checked ? c.value : "") : c.value.trim(); }
    controls.forEach(function (c) {
      var key = c.getAttribute("data-filter");
      var value = params.get(key === "text" ? "q" : key);
      if (value === null) return;
      if (c.type === "checkbox") c.checked = value === c.value; else c.value = value;
    });
    function apply() {
      var wanted = {};
      controls.forEach(function (c) { wanted[c.getAttribute("data-filter")] = valueOf(c).toLowerCase(); });
      var shown = 0;
      rows.forEach(function (row) {
        var ok = true;
        Object.keys(wanted).forEach(function (key) {
          var want = wanted[key];
          if (!want || !ok) return;
          var have = (row.getAttribute("data-" + key) || "").toLowerCase();
          if (key === "text") {
            ok = want.split(/\s+/).every(function (word) { return have.indexOf(word) !== -1; });
          } else if (key === "tags") {
            ok = (" " + have + " ").indexOf(" " + want + " ") !== -1;
          } else if (key === "difficulty") {
            ok = difficultyMatches(have, want);
          } else {
            ok = have === want;
          }
        });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (empty) empty.hidden = shown !== 0;
      if (counter) counter.textContent = shown + " of " + rows.length + " shown";
      var next = new URLSearchParams();
      controls.forEach(function (c) {
        var key = c.getAttribute("data-filter");
        if (valueOf(c)) next.set(key === "text" ? "q" : key, valueOf(c));
      });
      var query = next.toString();
      history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
    }
    controls.forEach(function (c) { c.addEventListener("input", apply); c.addEventListener("change", apply); });
    var scope = box.parentNode || document;
    scope.querySelectorAll("[data-clear]").forEach(function (button) {
      button.addEventListener("click", function () {
        controls.forEach(function (c) { if (c.type === "checkbox") c.checked = false; else c.value = ""; });
        apply();
      });
    });
    initSorting(table, rows, empty);
    apply();
  }

  // Column sorting: each row carries data-sort-<key> values written so that a plain string
  // comparison gives the right order (problem numbers are zero-padded: 6.7 before 6.52).
  function initSorting(table, rows, empty) {
    var body = table.tBodies[0];
    table.querySelectorAll("th button[data-sort]").forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.getAttribute("data-sort");
        var th = button.parentNode;
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var sorted = rows.slice().sort(function (a, b) {
          var x = a.getAttribute("data-sort-" + key) || "", y = b.getAttribute("data-sort-" + key) || "";
          var byKey = x < y ? -1 : x > y ? 1 : 0;
          if (byKey === 0) {
            x = a.getAttribute("data-sort-number"); y = b.getAttribute("data-sort-number");
            byKey = x < y ? -1 : x > y ? 1 : 0;
          }
          return ascending ? byKey : -byKey;
        });
        sorted.forEach(function (row) { body.appendChild(row); });
        if (empty) body.appendChild(empty);
      });
    });
  }

  // Wide diagrams are scaled to the column; a button shows them at full size (scrolling).
  function initDiagramZoom(wrap) {
    var svg = wrap.querySelector("svg.mikb-diagram");
    if (!svg) return;
    var natural = parseFloat(svg.getAttribute("width")) || 0;
    if (!natural || natural <= wrap.clientWidth + 4) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "mikb-zoom";
    button.textContent = "Full size";
    button.addEventListener("click", function () {
      var zoomed = wrap.classList.toggle("mikb-zoomed");
      button.textContent = zoomed ? "Fit to page" : "Full size";
    });
    wrap.parentNode.insertBefore(button, wrap);
  }

  var plotlyPromise = null;
  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyPromise) {
      plotlyPromise = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = new URL("vendor/plotly.min.js", assetsBase).href;
        s.onload = function () { resolve(window.Plotly); };
        s.onerror = reject;
        document.head.appendChild(s);
      });
    }
    return plotlyPromise;
  }

  function initPlot(div) {
    fetch(div.getAttribute("data-src"))
      .then(function (r) { return r.json(); })
      .then(function (spec) {
        return loadPlotly().then(function (Plotly) {
          var layout = spec.layout || {};
          layout.autosize = true;
          // Plain number ticks: plotly's default SI prefixes print a loss of 0.0001 as "100μ".
          ["xaxis", "yaxis"].forEach(function (name) {
            var axis = layout[name] = layout[name] || {};
            if (!axis.exponentformat) axis.exponentformat = axis.type === "log" ? "power" : "none";
          });
          return Plotly.newPlot(div, spec.data || [], layout, { responsive: true, displaylogo: false });
        });
      })
      .catch(function (err) {
        div.textContent = "Interactive figure could not be loaded (" + err + ").";
      });
  }

  // Phone cards: each cell learns its column's name (shown before it when the stylesheet turns
  // a wide table into one card per row). Marked by attribute, not class, so Material's styling
  // of plain tables (table:not([class])) still applies.
  function labelCells(table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head || !table.tBodies.length) return;
    var names = Array.prototype.map.call(head.cells, function (c) { return c.textContent.trim(); });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      Array.prototype.forEach.call(row.cells, function (cell, i) {
        if (names[i]) cell.setAttribute("data-label", names[i]);
      });
    });
    if (names.length >= 4) table.setAttribute("data-mikb-cards", "");
  }

  function init() {
    document.querySelectorAll(".md-typeset table:not(.mikb-problems)").forEach(labelCells);
    document.querySelectorAll(".mikb-filters").forEach(initFilters);
    document.querySelectorAll(".mikb-plotly[data-src]").forEach(initPlot);
    document.querySelectorAll(".mikb-diagram-wrap").forEach(initDiagramZoom);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
