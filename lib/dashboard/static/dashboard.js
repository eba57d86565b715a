// The dashboard page's script, served from the dashboard itself (its Content-Security-Policy allows no inline script).
// Draws the figure; the picker and the adjustment reload the page with the new URL (state in the URL); zooming
// writes the visible span into the URL so that a shared link opens the same view.
(function () {
  const form = document.getElementById("controls");
  const picker = document.getElementById("symbol");
  if (form && picker) {
    const known = new Set(Array.from(document.querySelectorAll("#universe option"), o => o.value));
    (picker.dataset.held || "").split(" ").filter(Boolean).forEach(t => known.add(t));  // old tickers of securities
    picker.addEventListener("change", () => {
      picker.value = picker.value.trim().toUpperCase();
      if (known.has(picker.value)) form.requestSubmit();
    });
    document.getElementById("adjust").addEventListener("change", () => form.requestSubmit());
  }
  const chart = document.getElementById("chart");
  if (!chart || !chart.dataset.figure || typeof Plotly === "undefined") return;
  const fig = JSON.parse(chart.dataset.figure);
  Plotly.newPlot(chart, fig.data, fig.layout, {responsive: true, displaylogo: false, scrollZoom: true})
    .then(() => { chart.dataset.ready = "true"; chart.on("plotly_relayout", keepSpanInUrl); });
  function keepSpanInUrl(change) {
    const first = change["xaxis.range[0]"], last = change["xaxis.range[1]"];
    if (!first || !last) return;
    const url = new URL(window.location.href);
    url.searchParams.set("start", String(first).slice(0, 10));
    url.searchParams.set("end", String(last).slice(0, 10));
    window.history.replaceState(null, "", url);
  }
})();
