// lake docs: draws the DAG once (positions come computed in the data), filters by toggling
// classes, renders one node's page on demand and only the visible rows of the node list.
(function () {
  "use strict";
  var errors = document.getElementById("errors");
  function report(text) { errors.textContent += text + "\n"; }
  window.onerror = function (message, source, line, column) { report("error: " + message + " (" + source + ":" + line + ":" + column + ")"); };
  window.addEventListener("unhandledrejection", function (e) { report("error: " + e.reason); });

  var D = JSON.parse(document.getElementById("lake-data").textContent);
  var N = D.nodes, W = 190, H = 24, ROW = 22;
  var byKey = {}, byTable = {};
  N.forEach(function (n, i) { byKey[n.key] = i; if (n.table) byTable[n.table] = i; });

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }
  function short(s, max) { return s.length > max ? s.slice(0, max - 1) + "…" : s; }

  // ---- the drawing ----
  var svg = document.getElementById("dag"), edges = [], into = N.map(function () { return []; }), outOf = N.map(function () { return []; });
  N.forEach(function (n, i) { n.parents.forEach(function (p) { into[i].push(edges.length); outOf[p].push(edges.length); edges.push([p, i]); }); });
  function draw() {
    var parts = [];
    D.bands.forEach(function (b) {
      parts.push('<rect class="band" x="' + b[1] + '" y="4" width="' + (b[2] - b[1]) + '" height="' + (D.height - 8) + '" rx="6"></rect>');
      parts.push('<text class="band-label" x="' + (b[1] + 10) + '" y="24">' + esc(b[0]) + "</text>");
    });
    edges.forEach(function (e, k) {
      var a = N[e[0]], b = N[e[1]], x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      parts.push('<path class="edge" data-edge="' + k + '" d="M' + x1 + " " + y1 + "C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2 + '"></path>');
    });
    N.forEach(function (n, i) {
      var cls = "node " + n.kind + (n.materialized === "ephemeral" ? " ephemeral" : "") + (n.last_run && n.last_run.status === "error" ? " failed" : "");
      parts.push('<g class="' + cls + '" data-i="' + i + '" data-key="' + esc(n.key) + '" transform="translate(' + n.x + "," + n.y + ')"><title>' + esc(n.table || n.name) + "</title>" +
        '<rect width="' + W + '" height="' + H + '" rx="4"></rect><text x="8" y="16">' + esc(short(n.name, 27)) + "</text></g>");
    });
    svg.setAttribute("width", D.width);
    svg.setAttribute("height", D.height);
    svg.setAttribute("viewBox", "0 0 " + D.width + " " + D.height);
    svg.innerHTML = parts.join("");
  }
  draw();
  var nodeEls = svg.querySelectorAll("g.node"), edgeEls = svg.querySelectorAll("path.edge");
  svg.addEventListener("click", function (e) {
    var g = e.target.closest && e.target.closest("g.node");
    if (g) location.hash = g.getAttribute("data-key");
  });

  // ---- the list (only the rows in view exist) ----
  var list = document.getElementById("list"), inner = document.getElementById("list-inner"), shown = N.map(function (n, i) { return i; });
  var order = shown.slice().sort(function (a, b) { return N[a].name < N[b].name ? -1 : N[a].name > N[b].name ? 1 : 0; });
  var selected = -1;
  function renderList() {
    inner.style.height = shown.length * ROW + "px";
    var from = Math.max(0, Math.floor(list.scrollTop / ROW) - 10), to = Math.min(shown.length, from + Math.ceil((list.clientHeight || 600) / ROW) + 20), html = [];
    for (var r = from; r < to; r++) {
      var n = N[shown[r]];
      html.push('<a style="top:' + r * ROW + 'px" href="#' + esc(n.key) + '"' + (shown[r] === selected ? ' class="sel"' : "") + ">" + esc(n.name) + " <small>" + esc(n.kind === "model" ? n.layer : n.kind) + "</small></a>");
    }
    inner.innerHTML = html.join("");
  }
  list.addEventListener("scroll", function () { requestAnimationFrame(renderList); });

  // ---- filter ----
  var filter = document.getElementById("filter"), count = document.getElementById("count"), timer = 0;
  function applyFilter() {
    var q = filter.value.trim().toLowerCase(), match = [];
    N.forEach(function (n, i) {
      var hit = !q || n.name.toLowerCase().indexOf(q) >= 0 || (n.table || "").toLowerCase().indexOf(q) >= 0;
      nodeEls[i].classList.toggle("dim", !hit);
      if (hit) match.push(i);
    });
    for (var k = 0; k < edgeEls.length; k++) edgeEls[k].classList.toggle("dim", !!q);
    var set = {};
    match.forEach(function (i) { set[i] = true; });
    shown = order.filter(function (i) { return set[i]; });
    count.textContent = shown.length + " of " + N.length;
    list.scrollTop = 0;
    renderList();
  }
  filter.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(applyFilter, 60); });

  // ---- selection: the node, its upstream and downstream ----
  var marked = [];
  function walk(start, next, cls, edgeSide) {
    var seen = {}, stack = [start];
    seen[start] = true;
    while (stack.length) {
      var i = stack.pop();
      next[i].forEach(function (k) {
        edgeEls[k].classList.add(cls);
        marked.push(edgeEls[k]);
        var j = edges[k][edgeSide];
        if (!seen[j]) { seen[j] = true; stack.push(j); nodeEls[j].classList.add(cls); marked.push(nodeEls[j]); }
      });
    }
  }
  function select(i) {
    marked.forEach(function (el) { el.classList.remove("sel", "up", "down"); });
    marked = [];
    selected = i;
    if (i < 0) return;
    nodeEls[i].classList.add("sel");
    marked.push(nodeEls[i]);
    walk(i, into, "up", 0);
    walk(i, outOf, "down", 1);
    var graph = document.getElementById("graph");
    graph.scrollLeft = Math.max(0, N[i].x - 200);
    graph.scrollTop = Math.max(0, N[i].y - 200);
  }

  // ---- a node's page ----
  function link(i) { return '<a href="#' + esc(N[i].key) + '">' + esc(N[i].name) + "</a>"; }
  function ref(e) {
    var i = byTable[e.table], name = esc(e.table + "." + e.column);
    var text = i == null ? name : '<a href="#' + esc(N[i].key) + '">' + name + "</a>";
    return text + ' <span class="kind">' + esc(e.kind) + (e.via && e.via.length ? " via " + esc(e.via.join(", ")) : "") + "</span>";
  }
  // The source-table columns a column derives from, following lineage through every model.
  var rootsMemo = {};
  function roots(table, column, depth) {
    var id = table + "." + column;
    if (rootsMemo[id]) return rootsMemo[id];
    var i = byTable[table], out = {};
    rootsMemo[id] = out;
    // `*` (an opaque model's input): every column of that table.
    var cols = i == null ? [] : N[i].columns.filter(function (c) { return column === "*" || c.name === column; });
    var from = [];
    cols.forEach(function (c) { from = from.concat(c.sources); });
    if (!from.length || depth > 5000) out[id] = true;
    else from.forEach(function (e) { Object.assign(out, roots(e.table, e.column, depth + 1)); });
    return (rootsMemo[id] = out);
  }
  function kv(label, value) { return value == null || value === "" ? "" : "<tr><th>" + esc(label) + "</th><td>" + value + "</td></tr>"; }
  function size(bytes) { return bytes == null ? null : bytes < 1024 ? bytes + " B" : bytes < 1048576 ? (bytes / 1024).toFixed(1) + " KiB" : (bytes / 1048576).toFixed(1) + " MiB"; }
  function columnsHtml(n) {
    if (!n.columns.length) return "<p class=meta>No columns known yet" + (n.lineage_error ? ": " + esc(n.lineage_error) : "") + ".</p>";
    var rows = n.columns.map(function (c) {
      var lineage = c.sources.map(ref).join("<br>") + (c.indirect.length ? '<br><span class="kind">rows decided by:</span> ' + c.indirect.map(ref).join(", ") : "");
      var r = c.sources.length && n.kind === "model" ? Object.keys(roots(n.table, c.name, 0)) : [];
      if (r.length) lineage += '<details><summary class="kind">from sources (' + r.length + ")</summary>" + r.map(esc).join(", ") + "</details>";
      return '<tr data-column="' + esc(c.name) + '"><td><code>' + esc(c.name) + "</code></td><td>" + esc(c.data_type) + "</td><td>" + esc(c.description) + '</td><td class="lineage">' + lineage + "</td></tr>";
    });
    return (n.lineage_error ? "<p class=meta>Lineage unknown: " + esc(n.lineage_error) + "</p>" : "") +
      '<table class="columns"><tr><th>column</th><th>type</th><th>description</th><th>lineage</th></tr>' + rows.join("") + "</table>";
  }
  function testsHtml(n) {
    if (!n.tests.length) return "<p class=meta>No data tests.</p>";
    return '<table class="tests"><tr><th>test</th><th>column</th><th>last result</th></tr>' + n.tests.map(function (t) {
      var result = t.status ? '<span class="' + esc(t.status) + '">' + esc(t.status) + "</span>" + (t.failures ? " (" + t.failures + " failing rows)" : "") + (t.message ? "<br><span class=meta>" + esc(t.message) + "</span>" : "") : '<span class="meta">not run</span>';
      return "<tr><td>" + esc(t.test) + '<br><span class="kind">' + esc(t.name) + (t.severity === "warn" ? " · warn" : "") + "</span></td><td>" + esc(t.column) + "</td><td>" + result + "</td></tr>";
    }).join("") + "</table>";
  }
  function runHtml(n) {
    var r = n.last_run, f = n.facts, html = "";
    if (r) {
      html += "<table>" + kv("status", r.status ? '<span class="' + esc(r.status) + '">' + esc(r.status) + "</span>" : null) + kv("rows written", r.rows) + kv("snapshot", r.snapshot_id) +
        kv("duration", r.duration_seconds == null ? null : r.duration_seconds.toFixed(2) + " s") + kv("watermark", esc(r.watermark)) + kv("operation", esc(r.operation)) +
        kv("committed", esc(r.at)) + kv("run id", esc(r.run_id)) + kv("message", esc(r.message)) + kv("from", r.from === "catalog" ? "the table's current snapshot" : "target/run_results.json") + "</table>";
    } else html += "<p class=meta>Not run yet.</p>";
    html += "<h2>Table</h2>";
    if (f) {
      html += "<table>" + kv("records", f.records) + kv("data files", f.data_files) + kv("delete files", f.delete_files) + kv("size", size(f.size_bytes)) + kv("snapshots", f.snapshots) +
        kv("current snapshot", f.current_snapshot_id) + kv("last updated", esc(f.last_updated)) + kv("format", esc(f.format_version)) + kv("location", "<code>" + esc(f.location) + "</code>") + "</table>";
    } else html += "<p class=meta>" + (n.table ? "No table in the catalog yet." : "Ephemeral: no table; inlined into the models that ref it.") + "</p>";
    return html;
  }
  function pageHtml(i) {
    var n = N[i], tags = '<span class="tag">' + esc(n.kind) + '</span><span class="tag">layer ' + esc(n.layer) + "</span>";
    if (n.materialized) tags += '<span class="tag">' + esc(n.materialized) + (n.strategy ? " · " + esc(n.strategy) : "") + "</span>";
    if (n.language) tags += '<span class="tag">' + esc(n.language) + "</span>";
    var html = "<h1>" + esc(n.name) + "</h1><div>" + tags + "</div>" + (n.table ? "<p class=meta><code>" + esc(n.table) + "</code> · " + esc(n.path) + "</p>" : "<p class=meta>" + esc(n.path) + "</p>");
    html += n.description ? "<p>" + esc(n.description) + "</p>" : "<p class=meta>No description.</p>";
    var cfg = Object.keys(n.config).map(function (k) { return kv(k, "<code>" + esc(JSON.stringify(n.config[k])) + "</code>"); }).join("");
    if (cfg || n.loaded_by.length) html += "<table>" + cfg + n.loaded_by.map(function (l) { return kv("loaded by", esc(l)); }).join("") + "</table>";
    html += "<h2>Upstream · downstream</h2><p>" + (n.parents.map(link).join(", ") || '<span class="meta">none</span>') + " → <b>" + esc(n.name) + "</b> → " + (n.children.map(link).join(", ") || '<span class="meta">none</span>') + "</p>";
    html += "<h2>Columns</h2>" + columnsHtml(n) + "<h2>Data tests</h2>" + testsHtml(n) + "<h2>Last run</h2>" + runHtml(n);
    if (n.sql) html += "<h2>Compiled SQL</h2><pre><code>" + esc(n.sql) + "</code></pre>";
    if (n.sql_error) html += "<h2>Compiled SQL</h2><p class=error>" + esc(n.sql_error) + "</p>";
    if (n.function) html += "<h2>Rust model</h2><p>Function <code>" + esc(n.function) + "</code>, inputs: " + (n.parents.map(link).join(", ") || "none") + "</p>";
    return html;
  }

  // ---- routing: #model=name, #source=ns.table, ... ----
  var page = document.getElementById("page");
  function route() {
    var key = decodeURIComponent(location.hash.replace(/^#/, "")), i = byKey[key];
    if (i == null) { select(-1); page.innerHTML = key ? "<p class=error>No node " + esc(key) + ".</p>" : ""; }
    else { select(i); page.innerHTML = pageHtml(i); page.scrollTop = 0; }
    renderList();
  }
  window.addEventListener("hashchange", route);
  count.textContent = N.length + " nodes";
  route();
  // Milliseconds from navigation start to the first drawing (tests and the README read it).
  document.body.setAttribute("data-render-ms", String(Math.round(performance.now())));
})();
