// mikb site behaviour: problem-table filters (kept in the URL) and interactive figures.
// Plain browser JavaScript with no dependencies, so the site works from any static host
// and offline. Paths are resolved from this script's own URL, which MkDocs sets correctly
// for every page depth.
(function () {
  "use strict";
  var scriptUrl = document.currentScript ? document.currentScript.src : "";
  var assetsBase = scriptUrl ? new URL("./", scriptUrl) : new URL("assets/", document.baseURI);

  function initFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    if (!table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var controls = Array.prototype.slice.call(box.querySelectorAll("[data-filter]"));
    var counter = box.querySelector(".mikb-count");
    var params = new URLSearchParams(window.location.search);
    controls.forEach(function (c) {
      var key = c.getAttribute("data-filter");
      var value = params.get(key === "text" ? "q" : key);
      if (value !== null) c.value = value;
    });
    function apply() {
      var wanted = {};
      controls.forEach(function (c) { wanted[c.getAttribute("data-filter")] = c.value.trim().toLowerCase(); });
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
          } else {
            ok = have === want;
          }
        });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (counter) counter.textContent = shown + " of " + rows.length + " shown";
      var next = new URLSearchParams();
      controls.forEach(function (c) {
        var key = c.getAttribute("data-filter");
        if (c.value) next.set(key === "text" ? "q" : key, c.value);
      });
      var query = next.toString();
      history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
    }
    controls.forEach(function (c) { c.addEventListener("input", apply); c.addEventListener("change", apply); });
    apply();
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
          return Plotly.newPlot(div, spec.data || [], layout, { responsive: true, displaylogo: false });
        });
      })
      .catch(function (err) {
        div.textContent = "Interactive figure could not be loaded (" + err + ").";
      });
  }

  function init() {
    document.querySelectorAll(".mikb-filters").forEach(initFilters);
    document.querySelectorAll(".mikb-plotly[data-src]").forEach(initPlot);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
