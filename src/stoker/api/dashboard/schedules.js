// Schedules: trigger, next run, last run and its result; run now, pause, resume.

import * as api from "./api.js";
import { badge, coalesce, fill, grid, h, Rows, serial } from "./dom.js";
import * as fmt from "./format.js";

const COLUMNS = ["Schedule", "Trigger", "Task", "Next run", "Last run", "Last result", "Actions"];

export class SchedulesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.load = serial(() => this.read());
    this.schedules = [];
    const tbody = h("tbody");
    this.rows = new Rows(tbody, (s) => s.name, (s) => this.row(s), "No schedules in the config.");
    this.element = h(
      "section",
      { "aria-labelledby": "schedules-title" },
      h("div", { class: "view-head" }, h("h2", { id: "schedules-title" }, "Schedules")),
      grid("schedules", COLUMNS, tbody),
    );
    this.reloadSoon = coalesce(() => this.load().catch(ctx.failed), 300);
  }

  async show() {
    await this.load();
  }

  hide() {}

  async read() {
    this.schedules = await api.get(api.path("schedules"));
    this.rows.set(this.schedules);
  }

  event(e) {
    if (e.type === "schedule" || (e.type === "job" && e.job.schedule)) this.reloadSoon();
  }

  tick() {
    for (const s of this.schedules) this.rows.get(s.name)?.tick();
  }

  row(s) {
    const cells = COLUMNS.slice(1, -1).map((label) => h("td", { "data-label": label }));
    const [trigger, task, next, last, result] = cells;
    const run = h("button", {
      type: "button",
      "aria-label": `Run ${s.name} now`,
      onclick: (e) => this.run(e.currentTarget, s.name),
    }, "Run now");
    const pause = h("button", { type: "button", onclick: (e) => this.toggle(e.currentTarget) });
    const tr = h(
      "tr",
      { dataset: { name: s.name } },
      h("th", { scope: "row" }, s.name),
      cells,
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, run, pause)),
    );
    let current = s;
    const tick = () => {
      const when = [fmt.time(current.next_run), " ", h("span", { class: "muted" }, fmt.relative(current.next_run))];
      fill(next, current.paused ? badge("paused") : when);
    };
    return {
      tr,
      tick,
      update: (x) => {
        current = x;
        fill(trigger, x.trigger, x.timezone ? ` (${x.timezone})` : "");
        fill(task, x.task);
        fill(last, fmt.time(x.last_run));
        fill(result, x.last_state ? badge(x.last_state) : "—", " ",
          x.last_job ? h("a", { href: `#/jobs/${x.last_job}` }, `#${x.last_job}`) : null);
        const action = x.paused ? "Resume" : "Pause";
        fill(pause, action);
        pause.setAttribute("aria-label", `${action} schedule ${x.name}`);
        pause.dataset.action = action.toLowerCase();
        pause.dataset.name = x.name;
        tick();
      },
    };
  }

  async run(button, name) {
    await this.ctx.act(button, async () => {
      const job = await api.post(api.path("schedules", name, "run"));
      this.reloadSoon();
      return `Queued job #${job.id} of schedule ${name}`;
    });
  }

  async toggle(button) {
    const { action, name } = button.dataset;
    await this.ctx.act(button, async () => {
      await api.post(api.path("schedules", name, action));
      await this.load();
      return `${action === "pause" ? "Paused" : "Resumed"} schedule ${name}`;
    });
  }
}
