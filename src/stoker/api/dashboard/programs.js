// Programs: every instance with its state, pid, uptime, restarts, memory and CPU; start, stop
// and restart per instance and per program; a log that follows.
//
// On a shared store (PostgreSQL) it shows every node's instances, grouped by node, with a node
// filter: this node's live and controllable, the others' as each last published them and
// read-only (their processes are not this daemon's to start, stop or read the logs of). Those
// change without an event here: while any are shown, the view reads them again every few
// seconds (no request at all on a single node).

import * as api from "./api.js";
import { badge, coalesce, fill, grid, h, serial } from "./dom.js";
import * as fmt from "./format.js";
import { Follower } from "./output.js";

const COLUMNS = ["Name", "State", "PID", "Uptime", "Restarts", "Memory", "CPU", "Actions"];
const ACTIONS = { start: "Started", stop: "Stopped", restart: "Restarted" };
const COUNTING = new Set(["starting", "running", "stopping"]); // states whose uptime grows
const OTHERS_EVERY = 5000; // ms between reads while other nodes' instances are shown
// The state filter: one state, or "not running" (whatever needs a look: backoff, fatal, exited,
// stopped, starting, stopping).
const STATE_CHOICES = ["running", "not running", "starting", "backoff", "stopping", "stopped", "exited", "fatal"];
const key = (p) => `${p.node}\n${p.name}`;

export class ProgramsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.load = serial(() => this.read());
    this.rows = new Map(); // node + instance name → {tr, cells, data, at}
    this.names = null; // the instances the table was built for
    this.table = grid("programs", COLUMNS); // a tbody per program (per node and program)
    this.measured = h("span", { class: "muted" });
    this.heads = new Map(); // node → the cell that says how long ago it was heard from
    this.summaries = new Map(); // node + program → {counts: "3 instances: 2 running, 1 backoff", names}
    this.others = false; // other nodes' instances are shown
    this.readAt = 0;
    this.nodeFilter = h("select", { "aria-label": "Node", onchange: () => this.filter() });
    this.nodeField = h("span", { hidden: true }, this.nodeFilter);
    this.stateFilter = h("select", { "aria-label": "State", onchange: () => this.filter() },
      h("option", { value: "" }, "All states"),
      STATE_CHOICES.map((s) => h("option", { value: s }, s)));
    this.shown = h("span", { class: "muted", "aria-live": "polite" });
    this.logTitle = h("h3", { id: "log-title" });
    this.log = new Follower("Program output");
    this.logPanel = h(
      "section",
      { class: "panel", hidden: true, "aria-labelledby": "log-title" },
      h("div", { class: "panel-head" }, this.logTitle,
        h("button", { type: "button", onclick: () => this.closeLog() }, "Close")),
      this.log.element,
    );
    this.element = h(
      "section",
      { "aria-labelledby": "programs-title" },
      h("div", { class: "view-head" },
        h("h2", { id: "programs-title" }, "Programs"),
        this.stateFilter,
        this.nodeField,
        this.shown,
        this.measured,
        h("button", { type: "button", onclick: () => this.load().catch(ctx.failed) }, "Refresh")),
      this.table,
      this.logPanel,
    );
    // An event carries no memory or CPU (measuring costs a pass over /proc): look once
    // after a burst of changes.
    this.lookAgain = coalesce(() => this.load().catch(ctx.failed), 1000);
  }

  async show() {
    await this.load();
  }

  hide() {
    this.closeLog();
  }

  async read() {
    this.readAt = performance.now();
    let list;
    try {
      list = await api.get(`${api.path("programs")}?all_nodes=1`);
    } catch (error) {
      if (error.status !== 503) throw error;
      // The shared store is away: this node's own programs stay in view and controllable.
      list = await api.get(api.path("programs"));
      this.ctx.notify(`Other nodes not shown: ${error.message}`, "error");
    }
    const names = list.map(key).join("\n");
    if (names !== this.names) this.build(list);
    this.names = names;
    for (const p of list) this.update(p, true);
    for (const p of list) this.summarize(p);
    this.showNodes(list);
    fill(this.measured, `memory and CPU as of ${fmt.time(new Date().toISOString())}`);
  }

  local(p) {
    return p.node_silent_for === null || p.node_silent_for === undefined;
  }

  showNodes(list) {
    for (const [node, cell] of this.heads) {
      const p = list.find((q) => q.node === node);
      if (!p) continue;
      const ago = `heard from ${fmt.duration(p.node_silent_for)} ago`;
      fill(cell, p.node_lapsed ? h("span", { class: "lapsed" }, `lapsed: silent for ${fmt.duration(p.node_silent_for)}`)
        : this.local(p) ? "this node" : ago);
    }
  }

  // The node and state filters: an instance row shows when it matches both; a program's
  // rows (its summary row included) when any of its instances shows; a node's heading when
  // any of its programs does.
  filter() {
    const node = this.nodeFilter.value;
    const state = this.stateFilter.value;
    const matches = (data) =>
      (!node || data.node === node) &&
      (!state || (state === "not running" ? data.state !== "running" : data.state === state));
    let shown = 0;
    for (const row of this.rows.values()) {
      row.tr.hidden = !matches(row.data);
      if (!row.tr.hidden) shown += 1;
    }
    for (const body of this.table.querySelectorAll("tbody")) {
      if (body.classList.contains("node-head")) continue;
      const rows = body.querySelectorAll("tr[data-name]");
      body.hidden = rows.length > 0 && [...rows].every((tr) => tr.hidden);
    }
    for (const head of this.table.querySelectorAll("tbody.node-head")) {
      const mine = this.table.querySelectorAll(`tbody[data-program][data-node="${CSS.escape(head.dataset.node)}"]`);
      head.hidden = [...mine].every((b) => b.hidden);
    }
    const total = this.rows.size;
    fill(this.shown, state || node ? `${shown} of ${total} instances` : "");
  }

  event(e) {
    if (e.type !== "program") return;
    this.update(e.program, false);
    this.lookAgain();
  }

  tick() {
    const now = performance.now();
    for (const row of this.rows.values()) showUptime(row, now);
    if (this.others && !this.load.busy && now - this.readAt > OTHERS_EVERY) this.load().catch(this.ctx.failed);
  }

  build(list) {
    for (const body of this.table.querySelectorAll("tbody")) body.remove();
    this.rows.clear();
    this.heads.clear();
    this.summaries.clear();
    const nodes = new Map(); // node → program → instances, in the API's order (this node first)
    for (const p of list) {
      if (!nodes.has(p.node)) nodes.set(p.node, new Map());
      const programs = nodes.get(p.node);
      if (!programs.has(p.program)) programs.set(p.program, []);
      programs.get(p.program).push(p);
    }
    this.others = list.some((p) => !this.local(p));
    const several = nodes.size > 1;
    this.nodeField.hidden = !several;
    const chosen = this.nodeFilter.value;
    fill(this.nodeFilter, h("option", { value: "" }, "All nodes"),
      [...nodes.keys()].map((node) => h("option", { value: node }, node)));
    this.nodeFilter.value = nodes.has(chosen) ? chosen : "";
    if (!list.length) {
      const none = h("tr", { class: "empty" }, h("td", { colspan: COLUMNS.length }, "No programs in the config."));
      this.table.append(h("tbody", {}, none));
    }
    for (const [node, programs] of nodes) {
      const local = this.local(programs.values().next().value[0]);
      if (several) {
        const seen = h("span", { class: "muted" });
        this.heads.set(node, seen);
        this.table.append(h("tbody", { class: "node-head", dataset: { node } },
          h("tr", {}, h("th", { scope: "rowgroup", colspan: COLUMNS.length }, `Node ${node} `, seen))));
      }
      for (const [program, instances] of programs) {
        const body = h("tbody", { dataset: { program, node } });
        if (instances.length > 1) {
          const counts = h("span", { class: "muted counts" });
          this.summaries.set(`${node}\n${program}`, { counts, names: instances.map(key) });
          body.append(
            h("tr", { class: "program-row" },
              h("th", { scope: "rowgroup", colspan: COLUMNS.length - 1 }, program, " ", counts),
              h("td", { "data-label": "All" },
                local ? this.buttons(program, `every instance of ${program}`) : null)),
          );
        }
        for (const p of instances) body.append(this.row(p, local));
        this.table.append(body);
      }
    }
    this.filter();
  }

  row(p, local = true) {
    const cell = (label) => h("td", { "data-label": label });
    const cells = {
      state: cell("State"),
      pid: cell("PID"),
      uptime: cell("Uptime"),
      restarts: cell("Restarts"),
      memory: cell("Memory"),
      cpu: cell("CPU"),
    };
    const note = h("div", { class: "note" });
    const logs = h("button", {
      type: "button",
      "aria-label": `Logs of ${p.name}`,
      onclick: () => this.openLog(p.name),
    }, "Logs");
    const tr = h(
      "tr",
      { dataset: { name: p.name, node: p.node } },
      h("th", { scope: "row" }, h("span", { class: "name" }, p.name), note),
      Object.values(cells),
      h("td", { "data-label": "Actions" }, local ? this.buttons(p.name, p.name, logs) : readOnly(p.node)),
    );
    this.rows.set(key(p), { tr, cells, note, data: p, at: performance.now() });
    return tr;
  }

  buttons(target, label, ...more) {
    return h(
      "div",
      { class: "actions" },
      Object.keys(ACTIONS).map((action) => {
        const name = action[0].toUpperCase() + action.slice(1);
        return h("button", {
          type: "button",
          "aria-label": `${name} ${label}`,
          onclick: (ev) => this.act(ev.currentTarget, target, action),
        }, name);
      }),
      more,
    );
  }

  // `measured`: the JSON came from a look (memory and CPU are figures), not from an event.
  update(p, measured) {
    const row = this.rows.get(key(p));
    if (!row) {
      this.lookAgain(); // a program added or removed by a reload
      return;
    }
    const old = row.data;
    const data = measured || old.pid !== p.pid ? p : { ...p, memory: old.memory, cpu: old.cpu };
    row.data = data;
    row.at = performance.now();
    const { cells } = row;
    fill(cells.state, badge(data.state));
    fill(cells.pid, data.pid ?? "—");
    fill(cells.restarts, data.restarts);
    fill(cells.memory, fmt.bytes(data.memory));
    fill(cells.cpu, fmt.percent(data.cpu));
    const notes = [
      crashLoop(data.crash_loop),
      data.error,
      data.state === "backoff" && data.retry_at ? `next try ${fmt.time(data.retry_at)}` : null,
      data.status_text,
      data.waiting_for?.length ? `waiting for ${data.waiting_for.join(", ")}` : null,
      data.stopped_by_hand ? "stopped by hand" : null,
      data.placement,
    ];
    fill(row.note, notes.filter(Boolean).join(" · "));
    showUptime(row, row.at);
    if (old.state !== data.state) {
      this.summarize(data);
      if (this.stateFilter.value) this.filter();
    }
  }

  // A program's heading row counts its instances by state, as `stoker status` does.
  summarize(p) {
    const summary = this.summaries.get(`${p.node}\n${p.program}`);
    if (!summary) return;
    const counts = new Map();
    for (const name of summary.names) {
      const state = this.rows.get(name)?.data.state;
      if (state) counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    const parts = [...counts].map(([state, n]) => `${n} ${state}`).join(", ");
    fill(summary.counts, `${summary.names.length} instances: ${parts}`);
  }

  async act(button, target, action) {
    await this.ctx.act(button, async () => {
      const rows = await api.post(api.path("programs", target, action));
      for (const p of rows) this.update(p, true);
      return `${ACTIONS[action]} ${target}`;
    });
  }

  openLog(name) {
    this.logPanel.hidden = false;
    fill(this.logTitle, `Output of ${name}`);
    this.log.follow(`${api.path("programs", name, "logs")}?tail=200&follow=1`);
    this.logPanel.scrollIntoView({ block: "nearest" });
  }

  closeLog() {
    this.log.stop();
    this.logPanel.hidden = true;
  }
}

// "crash loop: 12 exits in 40s", as `stoker status` says it (null: not in one).
function crashLoop(loop) {
  if (!loop) return null;
  const took = loop.seconds < 1 ? `${loop.seconds.toFixed(2)}s` : fmt.duration(loop.seconds);
  return `crash loop: ${loop.exits} exits in ${took}`;
}

// Another node's instance: shown, not controlled from here.
function readOnly(node) {
  return h("span", { class: "muted", title: `Control it through the daemon on ${node}` }, `read-only · ${node}`);
}

// The uptime of the last look, grown by the time since (a clock on the page, not a request).
function showUptime(row, now) {
  const { data } = row;
  const counting = data.uptime !== null && COUNTING.has(data.state);
  fill(row.cells.uptime, fmt.duration(counting ? data.uptime + (now - row.at) / 1000 : null));
}
