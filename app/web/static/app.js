// Accelerate Tracking dashboard: load the page content (with the API key when reads are
// protected), open keyed links, draw its charts with Plotly, follow a live run, run a suite.
(function () {
  "use strict";
  // The key is kept in localStorage, not sessionStorage: a link opened in a new tab (the usual
  // way to read a dashboard) asked for it again. It never leaves this origin and this browser
  // profile, the server only compares it, and the header's "forget key" deletes it; a shared
  // browser profile should be given a read-only key (APP_API_KEYS) or forget it when done.
  var KEY = "accelerate-tracking.api-key";
  var TERMINAL = ["completed", "error", "timeout", "cancelled"];
  var STEP_COLORS = { completed: "#3c9a62", error: "#c0392b", timeout: "#c0392b",
    running: "#2f6fc0", pending: "#9aa3ae", skipped: "#c8a13a", cancelled: "#c8a13a" };

  function apiKey() { return localStorage.getItem(KEY); }

  function keepKey(key) {
    if (key) { localStorage.setItem(KEY, key); } else { localStorage.removeItem(KEY); }
    var forget = document.getElementById("forget-key");  // only when reads are protected
    if (forget) { forget.hidden = !key; }
  }

  function api(url, options) {
    options = options || {};
    var headers = new Headers(options.headers || {});
    var key = apiKey();
    if (key) { headers.set("X-API-Key", key); }
    options.headers = headers;
    return fetch(url, options);
  }

  function askForKey(message) {
    var form = document.getElementById("key-form");
    form.hidden = false;
    document.getElementById("key-error").textContent = message || "";
    form.querySelector("input").focus();
  }

  function setupKeyForm() {
    var form = document.getElementById("key-form");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      keepKey(form.querySelector("input").value);
      form.hidden = true;
      loadContent();
    });
    var forget = document.getElementById("forget-key");
    if (!forget) { return; }
    forget.hidden = !apiKey();
    forget.addEventListener("click", function () {
      keepKey(null);
      window.location.reload();
    });
  }

  function content() { return document.getElementById("content"); }

  // --- keyed links: page JSON, "Built from" API links, artifacts -------------------------------

  // A plain link cannot send X-API-Key: when reads are protected, a link marked data-keyed is
  // fetched with the key, then shown in a new tab (JSON) or saved (links with `download`).
  function setupKeyedLinks() {
    function onClick(ev) {
      if (ev.defaultPrevented || ev.button !== (ev.type === "auxclick" ? 1 : 0)) { return; }
      var link = ev.target.closest ? ev.target.closest("a[data-keyed]") : null;
      if (!link || link.origin !== window.location.origin) { return; }
      if (content().dataset.protected !== "true") { return; }  // reads are open: follow it
      ev.preventDefault();
      if (!apiKey()) { askForKey("This link needs the API key."); return; }
      openKeyed(link);
    }
    document.addEventListener("click", onClick);
    document.addEventListener("auxclick", onClick);
  }

  function openKeyed(link) {
    var save = link.hasAttribute("download");
    // Opened during the click: a tab opened after the fetch would be refused as a pop-up.
    var tab = save ? null : window.open("", "_blank");
    linkStatus("");
    return api(link.href).then(function (resp) {
      if (!resp.ok) { return refused(resp, link, tab); }
      return resp.blob().then(function (blob) {
        var url = URL.createObjectURL(blob);
        if (save) {
          saveAs(url, fileName(resp, link));
        } else if (tab) {
          tab.location.href = url;
        } else {
          window.location.href = url;  // pop-ups blocked: show it here
        }
        setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      });
    }).catch(function (err) {
      if (tab) { tab.close(); }
      linkStatus("Could not open " + link.pathname + ": " + err.message);
    });
  }

  function refused(resp, link, tab) {
    if (tab) { tab.close(); }
    return resp.text().then(function (text) {
      var detail = text;
      try { detail = JSON.parse(text).detail; } catch (e) { /* not JSON */ }
      detail = typeof detail === "string" ? detail : JSON.stringify(detail);
      if (resp.status === 401 || resp.status === 403) {
        if (resp.status === 403) { keepKey(null); }
        askForKey(detail);
        return;
      }
      linkStatus("Could not open " + link.pathname + ": " + resp.status + " " + detail);
    });
  }

  function linkStatus(text) {
    var box = document.getElementById("link-status");
    box.textContent = text;
    box.hidden = !text;
  }

  function fileName(resp, link) {
    var header = resp.headers.get("Content-Disposition") || "";
    var star = /filename\*=utf-8''([^;]+)/i.exec(header);
    if (star) { return decodeURIComponent(star[1]); }
    var plain = /filename="?([^";]+)"?/.exec(header);
    if (plain) { return plain[1]; }
    return link.getAttribute("download") || link.pathname.split("/").pop();
  }

  function saveAs(url, name) {
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function loadContent() {
    var main = content();
    return api(main.dataset.part).then(function (resp) {
      if (resp.status === 401 || resp.status === 403) {
        return resp.json().then(function (body) {
          if (resp.status === 403) { keepKey(null); }
          askForKey(body.detail);
        });
      }
      var title = resp.headers.get("X-Page-Title");
      return resp.text().then(function (html) {
        if (!resp.ok) {
          var detail = html;
          try { detail = JSON.parse(html).detail; } catch (e) { /* not JSON */ }
          main.innerHTML = '<section class="card error-card"><h1>Error ' + resp.status +
            '</h1><p class="detail"></p></section>';
          main.querySelector(".detail").textContent = String(detail);
          return;
        }
        main.innerHTML = html;
        main.dataset.loaded = "true";
        if (title) { document.title = title + " · Accelerate Tracking"; }
        init(main);
      });
    });
  }

  // --- charts ----------------------------------------------------------------------------

  function drawCharts(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = JSON.parse(el.dataset.chart);
      var traces;
      var layout = {
        margin: { l: 56, r: 12, t: 24, b: 40 }, height: 240,
        legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, showlegend: true,
        font: { family: "system-ui, sans-serif", size: 11 },
        xaxis: { type: "date", automargin: true, nticks: 6 },
        yaxis: { title: { text: spec.y_title || "" }, automargin: true, rangemode: "tozero" },
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)"
      };
      if (spec.kind === "timeline") {
        var s = spec.series[0];
        traces = [{ type: "bar", orientation: "h", name: "steps", y: s.y, x: s.x, base: s.base,
          marker: { color: s.status.map(function (st) { return STEP_COLORS[st] || "#9aa3ae"; }) },
          hovertemplate: "%{y}<br>%{x} ms<extra></extra>" }];
        layout.height = Math.min(520, 60 + 22 * s.y.length);
        layout.showlegend = false;
        layout.yaxis = { automargin: true, autorange: "reversed", type: "category" };
        layout.margin = { l: 12, r: 12, t: 8, b: 40 };
      } else {
        traces = spec.series.map(function (s) {
          var trace = { type: "scatter", mode: s.mode || "lines+markers", name: s.name,
            x: s.x, y: s.y, marker: { size: s.mode === "markers" ? 8 : 5 } };
          if (s.color) { trace.marker.color = s.color; trace.line = { color: s.color }; }
          return trace;
        });
        if (spec.y_format) { layout.yaxis.tickformat = spec.y_format; }
        // Change points (the first run after a change, from the regressions report).
        if (spec.marks && spec.marks.length) {
          layout.shapes = spec.marks.map(function (m) {
            return { type: "line", xref: "x", yref: "paper", x0: m.x, x1: m.x, y0: 0, y1: 1,
              line: { color: "#c0392b", width: 1.5, dash: "dot" } };
          });
          layout.annotations = spec.marks.map(function (m) {
            return { x: m.x, xref: "x", y: 1, yref: "paper", yanchor: "bottom", text: m.label,
              showarrow: false, font: { size: 10, color: "#8a1c1c" } };
          });
          layout.margin.t = 40;
          layout.legend.y = 1.12;
          el.dataset.marks = String(spec.marks.length);
        }
      }
      el.style.height = layout.height + "px";
      el.classList.add("drawn");
      window.Plotly.newPlot(el, traces, layout,
        { displayModeBar: false, responsive: true, displaylogo: false });
    });
  }

  // --- live run ----------------------------------------------------------------------------

  var live = null;

  function follow(root) {
    var box = root.querySelector("[data-live-run]");
    if (!box) { stopLive(); return; }
    var runId = box.dataset.liveRun;
    if (live && live.runId === runId) { return; }
    stopLive();
    live = { runId: runId, abort: new AbortController(), timer: null, last: null, refresh: null };
    streamEvents(live);
    // The recording API (CI, the pytest plugin) changes runs without events: poll too.
    live.timer = setInterval(function () { poll(live); }, 1500);
  }

  function stopLive() {
    if (!live) { return; }
    live.abort.abort();
    clearInterval(live.timer);
    clearTimeout(live.refresh);
    live = null;
  }

  function showStatus(state, ev) {
    var sig = ev.status + "|" + ev.progress + "|" + ev.current_step;
    var bar = document.getElementById("run-progress");
    if (bar && typeof ev.progress === "number") {
      bar.value = ev.progress;
      document.getElementById("run-progress-text").textContent = Math.round(ev.progress * 100) + "%";
    }
    var step = document.getElementById("run-step");
    if (step && ev.current_step !== undefined) { step.textContent = ev.current_step || "–"; }
    if (state.last !== null && state.last !== sig) { scheduleRefresh(state); }
    state.last = sig;
    if (TERMINAL.indexOf(ev.status) >= 0) { scheduleRefresh(state); }
  }

  function scheduleRefresh(state) {
    if (state.refresh) { return; }
    state.refresh = setTimeout(function () {
      state.refresh = null;
      if (live === state) { loadContent(); }
    }, 400);
  }

  function poll(state) {
    api("/api/test/status/" + encodeURIComponent(state.runId), { signal: state.abort.signal })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (ev) { if (ev && live === state) { showStatus(state, ev); } })
      .catch(function () { /* aborted or offline: the next poll tries again */ });
  }

  function streamEvents(state) {
    // fetch, not EventSource: it can send the X-API-Key header.
    api("/api/test/events/" + encodeURIComponent(state.runId),
      { signal: state.abort.signal, headers: { Accept: "text/event-stream" } })
      .then(function (resp) {
        if (!resp.ok || !resp.body) { return; }
        var reader = resp.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { return; }
            buffer += decoder.decode(chunk.value, { stream: true });
            var parts = buffer.split("\n\n");
            buffer = parts.pop();
            parts.forEach(function (block) {
              var dataLine = block.split("\n").filter(function (l) { return l.indexOf("data: ") === 0; })[0];
              if (!dataLine) { return; }
              var ev = JSON.parse(dataLine.slice(6));
              if (live === state && ev.status) { showStatus(state, ev); }
            });
            return pump();
          });
        }
        return pump();
      })
      .catch(function () { /* aborted: the page moved on */ });
  }

  // --- generator: run the suite a task wrote -------------------------------------------------

  function setupRunButton(root) {
    var button = root.querySelector("[data-run-model]");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var msg = document.getElementById("run-suite-msg");
      button.disabled = true;
      msg.textContent = "starting…";
      api("/api/test/run", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model_name: button.dataset.runModel,
          hardware: JSON.parse(button.dataset.runHardware || '["cpu"]') })
      }).then(function (resp) {
        return resp.json().then(function (body) {
          if (resp.ok) { window.location.href = "/runs/" + encodeURIComponent(body.run_id); return; }
          button.disabled = false;
          msg.textContent = "Could not start: " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
          if (resp.status === 401 || resp.status === 403) { askForKey(body.detail); }
        });
      });
    });
  }

  // --- SQL: post the query to the read-only endpoint, show the rows, download CSV -----------

  function setupSql(root) {
    var form = root.querySelector("#sql-form");
    if (!form) { return; }
    var status = document.getElementById("sql-status");
    function body() {
      var limit = parseInt(form.elements.limit.value, 10) || 1000;
      return JSON.stringify({ sql: form.elements.sql.value, limit: limit });
    }
    function post(format) {
      var url = form.dataset.endpoint + (format ? "?format=" + format : "");
      return api(url, { method: "POST", headers: { "Content-Type": "application/json" },
        body: body() }).then(function (resp) {
        if (resp.ok) { return resp; }
        return resp.json().then(function (err) {
          var detail = typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail);
          if (resp.status === 401 || resp.status === 403) { askForKey(detail); }
          throw new Error(detail);
        });
      });
    }
    function bookmark() {
      var url = new URL(window.location.href);
      url.searchParams.set("sql", form.elements.sql.value);
      window.history.replaceState(null, "", url.pathname + url.search);
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      status.textContent = "running…";
      bookmark();
      post("").then(function (resp) { return resp.json(); }).then(function (result) {
        showRows(result);
        status.textContent = result.row_count + " rows in " + result.elapsed_ms + " ms" +
          (result.truncated ? " (truncated at the row limit)" : "");
      }).catch(function (err) { status.textContent = "Refused: " + err.message; });
    });
    document.getElementById("sql-csv").addEventListener("click", function (ev) {
      ev.preventDefault();
      status.textContent = "preparing CSV…";
      post("csv").then(function (resp) { return resp.blob(); }).then(function (blob) {
        var url = URL.createObjectURL(blob);
        saveAs(url, "query.csv");
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
        status.textContent = "CSV downloaded";
      }).catch(function (err) { status.textContent = "Refused: " + err.message; });
    });
  }

  function showRows(result) {
    var box = document.getElementById("sql-result");
    var table = document.createElement("table");
    table.className = "sql";
    table.id = "sql-table";
    var head = table.createTHead().insertRow();
    result.columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.name;
      th.title = c.type;
      head.appendChild(th);
    });
    var tbody = table.createTBody();
    result.rows.forEach(function (row) {
      var tr = tbody.insertRow();
      row.forEach(function (v) {
        var td = tr.insertCell();
        td.textContent = v === null ? "NULL" : (typeof v === "object" ? JSON.stringify(v) : String(v));
      });
    });
    box.replaceChildren(table);
  }

  function init(root) {
    drawCharts(root);
    follow(root);
    setupRunButton(root);
    setupSql(root);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupKeyForm();
    setupKeyedLinks();
    var main = content();
    if (main.dataset.loaded === "true") { init(main); return; }
    // Reads need a key and none is kept yet: ask before the first request, not after a 401.
    if (main.dataset.protected === "true" && !apiKey()) { askForKey(""); return; }
    loadContent();
  });
})();
