// Schedules: trigger, next run, last run and its result; run now, pause, resume; one
// schedule's history (#/schedules/NAME): its latest slots, each run's job or why it was skipped.

import * as api from "./api.js";
import { badge, coalesce, fill, grid, h, part, Rows, serial } from "./dom.js";
import * as fmt from "./format.js";

const COLUMNS = ["Schedule", "Trigger", "Task", "Next run", "Last run", "Last result", "Actions"];
const SLOT_COLUMNS = ["Slot", "Result", "Job", "Reason"];

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
    this.history = h("div", { class: "schedule-history" });
    this.element.append(this.history);
    this.selected = null; // the schedule whose history is asked for (#/schedules/NAME)
    this.historyOf = null; // … and the one the history table shows
    this.reloadSoon = coalesce(() => this.load().catch(ctx.failed), 300);
  }

  async show(where) {
    this.selected = where?.parts?.[0] ? decodeURIComponent(where.parts[0]) : null;
    await this.load();
  }

  hide() {}

  async read() {
    const name = this.selected;
    const [schedules, slots] = await Promise.all([
      api.get(api.path("schedules")),
      name ? api.get(`${api.path("schedules", name, "slots")}?limit=20`).catch((error) => error) : null,
    ]);
    this.schedules = schedules;
    this.rows.set(this.schedules);
    if (name !== this.historyOf) { // another schedule (or none): a new table
      this.historyOf = name;
      const body = h("tbody");
      this.slotRows = new Rows(body, (x) => x.slot, slotRow, "No slot recorded yet.");
      this.historyNote = h("p", { class: "muted" });
      fill(this.history, name
        ? part("schedule-history-title", `History of ${name}`, this.historyNote, grid("slots", SLOT_COLUMNS, body))
        : null);
    }
    if (!name) return;
    const failed = slots instanceof Error;
    fill(this.historyNote, failed ? slots.message : "Its latest 20 slots, newest first.");
    this.slotRows.set(failed ? [] : slots);
  }

  event(e) {
    const about = ["schedule", "schedule_missed"].includes(e.type) || (e.type === "job" && e.job.schedule);
    if (about) this.reloadSoon();
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
      h("th", { scope: "row" }, h("a", { href: `#/schedules/${encodeURIComponent(s.name)}`,
        title: `History of ${s.name}` }, s.name)),
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
        fill(trigger, x.trigger, x.timezone ? ` (${x.timezone})` : "",
          x.when_file ? h("span", { class: "note" }, ` while ${x.when_file} exists`) : null);
        fill(task, x.task);
        fill(last, fmt.time(x.last_run));
        fill(result, x.last_state ? badge(x.last_state) : "—", " ",
          x.last_job ? h("a", { href: `#/jobs/${x.last_job}` }, `#${x.last_job}`) : null,
          x.last_reason ? h("span", { class: "note" }, ` ${x.last_reason}`) : null);
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

// One slot of a schedule's history: when, how it ended (its job's state, or skipped), why.
function slotRow(x) {
  const cells = SLOT_COLUMNS.map((label) => h("td", { "data-label": label }));
  const [slot, result, job, reason] = cells;
  return {
    tr: h("tr", {}, cells),
    update: (y) => {
      fill(slot, fmt.time(y.slot));
      fill(result, badge(y.state));
      fill(job, y.job ? h("a", { href: `#/jobs/${y.job}` }, `#${y.job}`) : "—");
      fill(reason, y.reason ?? "");
    },
  };
}
