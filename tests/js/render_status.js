// Runs the status page's script against a tiny stand-in DOM and prints what it rendered.
// Usage: node render_status.js <status.js> < messages.json  (a JSON list of socket messages)
"use strict";
const fs = require("fs");

class Node_ {
  constructor(tag) {
    this.tagName = tag; this.children = []; this.dataset = {}; this.className = "";
    this.text = ""; this.parent = null; this.offsetWidth = 0; this.type = "";
    const classes = new Set();
    this.classList = { add: (c) => classes.add(c), remove: (c) => classes.delete(c) };
  }
  get textContent() {
    return this.children.length ? this.children.map((c) => c.textContent).join("") : this.text;
  }
  set textContent(v) { this.children = []; this.text = String(v); }
  get lastChild() { return this.children[this.children.length - 1] || null; }
  appendChild(c) { c.parent = this; this.children.push(c); return c; }
  append(...cs) { for (const c of cs) this.appendChild(typeof c === "string" ? text(c) : c); }
  prepend(c) { c.parent = this; this.children.unshift(c); }
  replaceChildren() { this.children = []; }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this); }
  addEventListener() {}
  set innerHTML(html) {
    this.children = [];
    for (const m of html.matchAll(/<(\w+)(?: class="([^"]*)")?><\/\1>|([^<]+)/g)) {
      if (m[3] !== undefined) { this.appendChild(text(m[3])); continue; }
      const el = new Node_(m[1]); el.className = m[2] || ""; this.appendChild(el);
    }
  }
  matches(sel) {
    const m = sel.match(/^(\w*)(?:\[data-([\w-]+)="([^"]*)"\])?(?:\.([\w-]+))?$/);
    if (!m) throw new Error(`selector not supported: ${sel}`);
    const [, tag, attr, value, cls] = m;
    const key = attr && attr.replace(/-(\w)/g, (_, c) => c.toUpperCase());
    return (!tag || this.tagName === tag) && (!attr || this.dataset[key] === value) &&
      (!cls || this.className.split(" ").includes(cls));
  }
  querySelectorAll(sel) {
    const found = [];
    const walk = (n) => { for (const c of n.children) { if (c.matches && c.matches(sel)) found.push(c); walk(c); } };
    walk(this);
    return found;
  }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
}
function text(s) { const t = new Node_("#text"); t.text = s; t.matches = null; return t; }

const ids = {};
for (const id of ["flexiai-status", "flexiai-providers", "flexiai-timeline", "flexiai-connection",
                  "flexiai-message", "flexiai-served-by", "flexiai-store", "flexiai-window",
                  "flexiai-tiers", "flexiai-capacity"]) {
  ids[id] = new Node_("div");
}
ids["flexiai-status"].dataset = { mayChange: "false", socketPath: "/ws/status/" };
let socket = null;
const sandbox = {
  document: { getElementById: (id) => ids[id], createElement: (tag) => new Node_(tag),
              createTextNode: text },
  CSS: { escape: (s) => s },
  location: { protocol: "http:", host: "testserver" },
  window: { confirm: () => true },
  WebSocket: class { constructor(url) { this.url = url; socket = this; } },
  setInterval: () => 0, setTimeout: () => 0,
};
new Function(...Object.keys(sandbox), fs.readFileSync(process.argv[2], "utf8"))(
  ...Object.values(sandbox));
for (const message of JSON.parse(fs.readFileSync(0, "utf8"))) {
  socket.onmessage({ data: JSON.stringify(message) });
}
const rows = ids["flexiai-providers"].children.map((row) => ({
  provider: row.dataset.provider,
  misconfigured: row.dataset.misconfigured || null,
  name: row.querySelector('[data-field="name"]').textContent,
  shown: row.querySelector('[data-field="misconfigured"]').textContent,
  state: row.querySelector('[data-field="state"]').textContent,
  probe: row.querySelector('[data-field="probe"]').textContent,
  inFlight: row.querySelector('[data-field="in-flight"]').textContent,
}));
const capacity = ids["flexiai-capacity"].children.map((li) => li.textContent);
process.stdout.write(JSON.stringify(process.argv[3] === "capacity" ? capacity
  : {rows, tiers: ids["flexiai-tiers"].textContent}));
