// honeyjet console: the chart and the live feed. No inline script anywhere (CSP);
// data comes from <script type="application/json"> elements and the SSE feed, and
// every attacker string is inserted with textContent, never as HTML.
(function () {
  "use strict";

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) { return null; }
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function drawChart() {
    var data = readJSON("chart-data");
    var canvas = document.getElementById("sessions-chart");
    if (!data || !canvas || typeof Chart === "undefined") { return; }
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: "sessions", data: data.sessions, backgroundColor: "#4a7bd0" }]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { x: { ticks: { maxTicksLimit: 14 } }, y: { beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function startFeed() {
    var body = document.getElementById("feed-rows");
    var state = document.getElementById("feed-state");
    if (!body || typeof EventSource === "undefined") { return; }
    // the page's sensor filter rides along in data-feed (a same-origin path the server built)
    var url = body.getAttribute("data-feed") || "/api/feed";
    if (url.charAt(0) !== "/" || url.charAt(1) === "/") { url = "/api/feed"; }
    var sensorColumn = body.hasAttribute("data-sensor-column");
    var source = new EventSource(url);
    source.addEventListener("open", function () { state.textContent = "live"; });
    source.addEventListener("error", function () { state.textContent = "reconnecting…"; });
    source.addEventListener("hj-event", function (msg) {
      var ev;
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      var tr = document.createElement("tr");
      cell(tr, ev.time);
      if (sensorColumn) { cell(tr, ev.sensor); }
      cell(tr, ev.eventid);
      var src = cell(tr, "");
      if (ev.session) {
        var a = document.createElement("a");
        a.href = "/sessions/" + encodeURIComponent(ev.session);
        a.textContent = ev.src_ip || ev.session;
        src.appendChild(a);
      } else {
        src.textContent = ev.src_ip;
      }
      cell(tr, ev.dst_port);
      cell(tr, ev.message);
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > 200) { body.deleteRow(body.rows.length - 1); }
    });
  }

  // the sensor picker: choosing a sensor submits its form (the button does it without script)
  function autoSubmit() {
    var selects = document.querySelectorAll("select[data-autosubmit]");
    Array.prototype.forEach.call(selects, function (sel) {
      sel.addEventListener("change", function () { if (sel.form) { sel.form.submit(); } });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawChart();
    startFeed();
    autoSubmit();
  });
})();
