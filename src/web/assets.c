/* assets.c — the dashboard's stylesheet and script, compiled into loupe (no
 * CDN, nothing fetched): sortable tables, search by token, nothing else. */
#include <string.h>

#include "web/web_int.h"

static const char k_css[] =
    ":root{--fg:#1d2330;--mute:#667085;--line:#d9dee8;--bg:#fff;--panel:#f6f8fb;--acc:#2d5bd7}\n"
    "*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
    "background:var(--bg);margin:0}\n"
    "header{background:#1d2330;color:#fff;padding:10px 24px}header a{color:#cfe0ff;text-decoration:none;margin-right:14px}"
    "header b{margin-right:18px}\n"
    "main{padding:16px 24px;max-width:1200px}h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:22px 0 8px;"
    "border-bottom:1px solid var(--line);padding-bottom:4px}\n"
    ".mute{color:var(--mute)}a{color:var(--acc)}\n"
    "table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid var(--line);padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:var(--panel);position:sticky;top:0;white-space:nowrap}\n"
    "th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:' \\2195';color:var(--mute)}"
    "th[data-dir=asc]:after{content:' \\25B2'}th[data-dir=desc]:after{content:' \\25BC'}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#e8ecf4}"
    ".tag.s0{background:#dff3e4}.tag.s1{background:#e4e6fb}.tag.s2{background:#fbeedd}.tag.mixed{background:#f3e3f0}"
    ".tag.dead{background:#eee;color:#999}\n"
    ".stats{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.stat{background:var(--panel);border:1px solid var(--line);"
    "border-radius:6px;padding:6px 10px}.stat b{display:block;font-size:16px}\n"
    ".expl{background:#fffbea;border:1px solid #f0e2a8;border-radius:6px;padding:8px 12px;margin:8px 0}\n"
    ".cols{display:flex;flex-wrap:wrap;gap:24px}.cols>div{min-width:260px}\n"
    ".ctx{font:13px/1.9 ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap;border-bottom:1px dotted var(--line);"
    "padding:2px 0}.ctx .v{display:inline-block;width:64px;color:var(--mute);text-align:right;margin-right:8px}\n"
    ".tok{border-radius:3px;padding:1px 0}.tok.centre{outline:2px solid #d9480f;outline-offset:0}\n"
    ".seg{display:inline-block;font-size:11px;color:var(--mute);width:80px}\n"
    "svg{background:var(--panel);border:1px solid var(--line);border-radius:4px}svg text{font:10px sans-serif;fill:#555}\n"
    "svg .bar{fill:#d9480f}svg .line{fill:none;stroke:#2d5bd7;stroke-width:1.5}svg .edge{stroke:#98a2b3;stroke-width:1}"
    "svg .node{fill:#2d5bd7}\n"
    "input#search{font-size:14px;padding:5px 8px;width:320px;border:1px solid var(--line);border-radius:4px}\n"
    ".lens td{padding:1px 6px}.lens .tokcell{font-family:ui-monospace,monospace;white-space:pre}\n"
    "nav.feat a{margin-right:14px}\n";

static const char k_js[] =
    "'use strict';\n"
    "function cellValue(row, i, num) {\n"
    "  const c = row.cells[i];\n"
    "  const v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();\n"
    "  if (!num) return v.toLowerCase();\n"
    "  const x = parseFloat(v);\n"
    "  return isNaN(x) ? -Infinity : x;\n"
    "}\n"
    "function sortTable(table, th) {\n"
    "  const i = Array.prototype.indexOf.call(th.parentNode.children, th);\n"
    "  const num = th.dataset.sort === 'num';\n"
    "  const dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';\n"
    "  table.querySelectorAll('th[data-sort]').forEach(h => h.removeAttribute('data-dir'));\n"
    "  th.dataset.dir = dir;\n"
    "  const body = table.tBodies[0];\n"
    "  const rows = Array.from(body.rows);\n"
    "  const s = dir === 'asc' ? 1 : -1;\n"
    "  rows.sort((a, b) => {\n"
    "    const x = cellValue(a, i, num), y = cellValue(b, i, num);\n"
    "    return x < y ? -s : x > y ? s : 0;\n"
    "  });\n"
    "  rows.forEach(r => body.appendChild(r));\n"
    "}\n"
    "function filterRows(q) {\n"
    "  q = q.trim().toLowerCase();\n"
    "  let shown = 0;\n"
    "  document.querySelectorAll('table.features tbody tr').forEach(r => {\n"
    "    const hit = !q || (r.dataset.search || '').indexOf(q) >= 0;\n"
    "    r.hidden = !hit;\n"
    "    if (hit) shown++;\n"
    "  });\n"
    "  const n = document.getElementById('shown');\n"
    "  if (n) n.textContent = shown;\n"
    "}\n"
    "document.addEventListener('DOMContentLoaded', () => {\n"
    "  document.querySelectorAll('table.sortable').forEach(t => {\n"
    "    t.querySelectorAll('th[data-sort]').forEach(th => th.addEventListener('click', () => sortTable(t, th)));\n"
    "  });\n"
    "  const q = document.getElementById('search');\n"
    "  if (q) {\n"
    "    q.addEventListener('input', () => filterRows(q.value));\n"
    "    if (q.value) filterRows(q.value);\n"
    "  }\n"
    "});\n";

int web_asset(const char *name, const char **data, size_t *len, const char **ctype) {
    if (!strcmp(name, "app.css")) {
        *data = k_css;
        *len = sizeof k_css - 1;
        *ctype = "text/css; charset=utf-8";
        return 1;
    }
    if (!strcmp(name, "app.js")) {
        *data = k_js;
        *len = sizeof k_js - 1;
        *ctype = "text/javascript; charset=utf-8";
        return 1;
    }
    return 0;
}
