// paz-web's own script: live state, the events list and the traffic chart. Pages read without it;
// htmx re-reads each page's live region when the event stream (paz-web's /events/stream) says so.
(function () {
  "use strict";
  var CHART_POINTS = 240;  // an hour from Prometheus (120 points) and the live ones after it

  function setLive(text) {
    var state = document.getElementById("live-state");
    if (state) { state.textContent = text; state.dataset.state = text; }
  }

  // Once the stream is open, read the live region again: what changed between the page's making
  // and the stream's opening came before the stream could tell.
  document.addEventListener("htmx:sseOpen", function () {
    setLive("live");
    var region = document.getElementById("live");
    if (region && typeof htmx !== "undefined") htmx.trigger(region, "paz:resync");
  });
  document.addEventListener("htmx:sseError", function () { setLive("reconnecting"); });

  // An event of the stream, as a line of text (never HTML: messages carry container output).
  function describe(type, data) {
    var parts = [type, data.service || ""];
    if (data.version !== undefined) parts.push("version " + data.version);
    if (data.unit) parts.push(data.unit);
    if (data.address) parts.push(data.address);
    if (data.reason) parts.push(data.reason);
    if (data.entry && data.entry.message) parts.push(data.entry.message);
    else if (data.message) parts.push(data.message);
    if (data.changed) parts.push("changed: " + data.changed.join(", "));
    return parts.filter(Boolean).join(" · ");
  }

  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var list = evt.target;
    if (!list || list.id !== "event-list") return;
    evt.preventDefault();
    var message = evt.detail, data = {};
    try { data = JSON.parse(message.data); } catch (e) { data = {}; }
    var item = document.createElement("li");
    item.className = "event event-" + message.type;
    item.dataset.type = message.type;
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    item.appendChild(time);
    item.appendChild(document.createTextNode(" " + describe(message.type, data)));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
  });

  // The traffic chart: the last hour from Prometheus when the page carries it (data-history), then
  // each stats fragment (polled every few seconds) adds a point.
  var chart = null, series = [[], [], [], []], previous = null;

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("chart");
    if (!box || !box.dataset.history) return;
    series = JSON.parse(box.dataset.history);
    drawChart();
  });

  function addPoint(figures) {
    var now = Date.now() / 1000;
    var errorsPerSecond = null;
    if (previous && figures.errors !== null && previous.errors !== null) {
      errorsPerSecond = Math.max(0, (figures.errors - previous.errors) / Math.max(1, now - previous.at));
    }
    previous = { at: now, errors: figures.errors };
    series[0].push(now); series[1].push(figures.rate); series[2].push(errorsPerSecond); series[3].push(figures.ms);
    if (series[0].length > CHART_POINTS) series.forEach(function (s) { s.shift(); });
  }

  function drawChart() {
    var box = document.getElementById("chart");
    if (!box || typeof uPlot === "undefined") return;
    var width = Math.max(240, box.clientWidth || 600);
    if (!chart) {
      chart = new uPlot({
        width: width, height: 180,
        series: [{}, { label: "requests/s", stroke: "#1d4ed8", width: 2 },
                 { label: "5xx/s", stroke: "#b91c1c", width: 2 },
                 { label: "response ms", stroke: "#047857", width: 2, scale: "ms" }],
        axes: [{}, { label: "per second" }, { side: 1, scale: "ms", label: "ms", grid: { show: false } }],
      }, series, box);
      box.dataset.ready = "true";
    } else {
      chart.setData(series);
    }
    box.dataset.points = String(series[0].length);
  }

  document.addEventListener("htmx:afterSwap", function (evt) {
    if (!evt.target || evt.target.id !== "stats") return;
    var holder = evt.target.querySelector("[data-traffic]");
    if (!holder) return;
    addPoint(JSON.parse(holder.dataset.traffic));
    drawChart();
  });

  window.addEventListener("resize", function () {
    var box = document.getElementById("chart");
    if (chart && box) chart.setSize({ width: Math.max(240, box.clientWidth), height: 180 });
  });
})();
