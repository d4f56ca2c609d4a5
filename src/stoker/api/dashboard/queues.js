// Queues: depth, running, concurrency, jobs done and failed in the last minute; pause, resume.

import * as api from "./api.js";
import { badge, coalesce, fill, grid, h, Rows, serial } from "./dom.js";

const COLUMNS = ["Queue", "State", "Queued", "Running", "Concurrency", "Done/min", "Failed/min", "Actions"];
const MINUTE = 60_000;

export class QueuesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.load = serial(() => this.read());
    const tbody = h("tbody");
    this.rows = new Rows(tbody, (q) => q.name, (q) => this.row(q), "No queues: the config has no tasks.");
    this.element = h(
      "section",
      { "aria-labelledby": "queues-title" },
      h("div", { class: "view-head" }, h("h2", { id: "queues-title" }, "Queues")),
      grid("queues", COLUMNS, tbody),
      h("p", { class: "muted" }, "Done/min and Failed/min: jobs that ended on this node in the last minute."),
    );
    this.reloadSoon = coalesce(() => this.load().catch(ctx.failed), 300);
    this.expiry = null;
  }

  async show() {
    await this.load();
  }

  hide() {
    clearTimeout(this.expiry);
  }

  async read() {
    this.render(await api.get(api.path("queues")));
  }

  event(e) {
    if (e.type === "queue" || e.type === "job") this.reloadSoon();
  }

  render(queues) {
    this.rows.set(queues);
    // Counts of the last minute fall as it passes, with no event to say so: look once more
    // when the oldest of them has left the minute.
    clearTimeout(this.expiry);
    if (queues.some((q) => q.done_per_minute || q.failed_per_minute)) {
      this.expiry = setTimeout(() => this.load().catch(this.ctx.failed), MINUTE + 1000);
    }
  }

  row(q) {
    const cells = COLUMNS.slice(1, -1).map((label) => h("td", { "data-label": label }));
    const button = h("button", { type: "button", onclick: (e) => this.toggle(e.currentTarget) });
    const tr = h(
      "tr",
      { dataset: { name: q.name } },
      h("th", { scope: "row" }, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name)),
      cells,
      h("td", { "data-label": "Actions" }, button),
    );
    return {
      tr,
      update: (x) => {
        const [state, queued, running, concurrency, done, failed] = cells;
        fill(state, badge(x.paused ? "paused" : "active"));
        fill(queued, x.queued);
        fill(running, x.running);
        fill(concurrency, x.concurrency);
        fill(done, x.done_per_minute ?? 0);
        fill(failed, x.failed_per_minute ?? 0);
        const action = x.paused ? "Resume" : "Pause";
        fill(button, action);
        button.setAttribute("aria-label", `${action} queue ${x.name}`);
        button.dataset.action = action.toLowerCase();
        button.dataset.queue = x.name;
      },
    };
  }

  async toggle(button) {
    const { action, queue } = button.dataset;
    await this.ctx.act(button, async () => {
      this.render(await api.post(api.path("queues", queue, action)));
      return `${action === "pause" ? "Paused" : "Resumed"} queue ${queue}`;
    });
  }
}
