// Jobs: a list with filters (state, queue, task), a form to enqueue a job of a configured task,
// and one job in full (parameters, every attempt, output, error, result; cancel, retry).

import * as api from "./api.js";
import { badge, coalesce, field, fill, grid, h, part, Rows, serial } from "./dom.js";
import * as fmt from "./format.js";
import { Follower } from "./output.js";

const PAGE = 50;
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
const FILTERS = ["state", "queue", "task"];
const COLUMNS = ["Task", "Queue", "State", "Attempt", "Created", "Finished", "Took", "Error"]; // after the ID

const shorten = (text, n) => (text && text.length > n ? `${text.slice(0, n)}…` : text ?? "");

// A filter: "any" or one of `choices`.
function select(label, name, choices) {
  const el = h("select", { name });
  setChoices(el, choices);
  return { el, label: field(label, el) };
}

function setChoices(sel, choices) {
  const value = sel.value;
  fill(sel, h("option", { value: "" }, "any"), choices.map((c) => h("option", { value: c }, c)));
  sel.value = choices.includes(value) ? value : "";
}

export class JobsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.load = serial(() => this.read());
    this.filters = {};
    this.jobs = [];
    this.state = select("State", "state", STATES);
    this.queue = select("Queue", "queue", []);
    this.task = select("Task", "task", []);
    const form = h(
      "form",
      {
        class: "filters",
        "aria-label": "Filter jobs",
        onchange: () => this.applyFilters(),
        onsubmit: (e) => e.preventDefault(),
      },
      this.state.label, this.queue.label, this.task.label,
    );
    const tbody = h("tbody");
    this.rows = new Rows(tbody, (job) => job.id, (job) => jobRow(job), "No jobs.");
    this.older = h("button", {
      type: "button",
      hidden: true,
      onclick: () => this.loadOlder().catch(ctx.failed),
    }, "Show older");
    this.enqueue = new EnqueueForm(ctx);
    this.element = h(
      "section",
      { "aria-labelledby": "jobs-title" },
      h("div", { class: "view-head" }, h("h2", { id: "jobs-title" }, "Jobs")),
      this.enqueue.element,
      form,
      grid("jobs", ["ID", ...COLUMNS], tbody),
      this.older,
    );
  }

  async show(route) {
    this.filters = Object.fromEntries(FILTERS.map((k) => [k, route.query.get(k) ?? ""]));
    await this.load();
  }

  async read() {
    const [jobs, queues, tasks, schedules] = await Promise.all([
      api.get(this.url()),
      api.get(api.path("queues")),
      api.get(api.path("tasks")),
      api.get(api.path("schedules")),
    ]);
    setChoices(this.queue.el, queues.map((q) => q.name));
    // The filter also offers what schedules run: an inline command's task (schedule.NAME) is
    // nothing to enqueue, but its jobs are listed under that name.
    setChoices(this.task.el, [...new Set([...tasks.map((t) => t.name), ...schedules.map((s) => s.task)])]);
    for (const k of FILTERS) this[k].el.value = this.filters[k];
    this.enqueue.setTasks(tasks);
    this.jobs = jobs;
    this.rows.set(jobs);
    this.older.hidden = jobs.length < PAGE;
  }

  url(before) {
    const query = new URLSearchParams({ limit: PAGE });
    for (const k of FILTERS) if (this.filters[k]) query.set(k, this.filters[k]);
    if (before) query.set("before", before);
    return `${api.path("jobs")}?${query}`;
  }

  async loadOlder() {
    const more = await api.get(this.url(this.jobs.at(-1).id));
    this.jobs = [...this.jobs, ...more];
    this.rows.set(this.jobs);
    this.older.hidden = more.length < PAGE;
  }

  applyFilters() {
    const query = new URLSearchParams();
    for (const k of FILTERS) if (this[k].el.value) query.set(k, this[k].el.value);
    location.hash = `#/jobs${query.size ? `?${query}` : ""}`;
  }

  event(e) {
    if (e.type !== "job") return;
    if (this.load.busy) {
      // The list being read may be older than this change: read it once more after.
      this.load().catch(this.ctx.failed);
      return;
    }
    const { job } = e;
    const at = this.jobs.findIndex((j) => j.id === job.id);
    const wanted = FILTERS.every((k) => !this.filters[k] || job[k] === this.filters[k]);
    if (at >= 0) this.jobs[at] = job;
    else if (wanted && (!this.jobs.length || job.id > this.jobs[0].id)) this.jobs.unshift(job); // a new one
    else return;
    this.rows.set(this.jobs);
  }

  hide() {}
}

function jobRow(job) {
  const cells = COLUMNS.map((label) => h("td", { "data-label": label }));
  const link = h("a", { href: `#/jobs/${job.id}` }, `#${job.id}`);
  const tr = h("tr", { dataset: { id: job.id } }, h("th", { scope: "row" }, link), cells);
  return {
    tr,
    update(j) {
      const [task, queue, state, attempt, created, finished, took, error] = cells;
      fill(task, j.task);
      fill(queue, j.queue);
      fill(state, badge(j.state));
      fill(attempt, `${j.attempt}/${j.max_attempts}`);
      fill(created, fmt.time(j.created_at));
      created.title = fmt.full(j.created_at);
      fill(finished, fmt.time(j.finished_at));
      finished.title = fmt.full(j.finished_at);
      fill(took, tookOf(j));
      fill(error, shorten(j.error, 120));
      error.title = j.error ?? "";
    },
  };
}

// How long its last attempt took (finished), has run so far (running: as of this update), or
// when it is due (queued for later: a delay, or a retry's backoff).
function tookOf(j) {
  const at = (iso) => new Date(iso).getTime();
  if (j.started_at && j.finished_at) return fmt.took((at(j.finished_at) - at(j.started_at)) / 1000);
  if (j.state === "running" && j.started_at) return `${fmt.took((Date.now() - at(j.started_at)) / 1000)} so far`;
  if (j.state === "queued" && j.run_at && at(j.run_at) > Date.now()) return `due ${fmt.relative(j.run_at)}`;
  return "—";
}

// A form for a job of one of the config's tasks: one field per parameter the task takes.
class EnqueueForm {
  constructor(ctx) {
    this.ctx = ctx;
    this.tasks = new Map();
    this.task = h("select", { name: "task", required: true, onchange: () => this.showParams() });
    this.params = h("fieldset", { class: "params" });
    this.delay = h("input", { name: "delay", placeholder: "now; or 30s, 5m, 2h" });
    this.priority = h("input", { name: "priority", type: "number", step: "1", value: "0" });
    this.key = h("input", { name: "key", placeholder: "optional: one live job per key" });
    this.error = h("p", { class: "error", role: "alert" });
    this.form = h(
      "form",
      { "aria-label": "Enqueue a job", onsubmit: (e) => this.submit(e) },
      field("Task", this.task),
      this.params,
      h("div", { class: "row" },
        field("Delay", this.delay), field("Priority", this.priority), field("Dedup key", this.key)),
      this.error,
      h("button", { type: "submit", class: "primary" }, "Enqueue"),
    );
    this.element = h("details", { class: "panel enqueue" }, h("summary", {}, "Enqueue a job"), this.form);
  }

  setTasks(tasks) {
    this.tasks = new Map(tasks.map((t) => [t.name, t]));
    const chosen = this.task.value;
    fill(this.task, tasks.map((t) => h("option", { value: t.name }, `${t.name} (queue ${t.queue})`)));
    if (this.tasks.has(chosen)) this.task.value = chosen;
    this.showParams(chosen === this.task.value);
  }

  showParams(keep = false) {
    if (keep && this.shown === this.task.value) return; // the same task: keep what was typed
    this.shown = this.task.value;
    const task = this.tasks.get(this.task.value);
    if (!task) {
      this.fields = new Map();
      fill(this.params, h("legend", {}, "Parameters"), h("p", { class: "muted" }, "No tasks in the config."));
      return;
    }
    this.fields = new Map(task.params.map((p) => [p.name, paramField(p)]));
    fill(
      this.params,
      h("legend", {}, "Parameters"),
      [...this.fields.values()].map((f) => f.element),
      task.open_ended
        ? field("Parameters as JSON", h("textarea", { name: "json", rows: "3", placeholder: '{"to": "a@b.example"}' }))
        : null,
      task.params.length || task.open_ended
        ? null
        : h("p", { class: "muted" }, "This task takes no parameters."),
    );
  }

  async submit(event) {
    event.preventDefault();
    fill(this.error);
    for (const f of this.fields?.values() ?? []) f.refused(null);
    let params = {};
    const json = this.params.querySelector("textarea");
    if (json && json.value.trim()) {
      try {
        params = JSON.parse(json.value);
      } catch (e) {
        fill(this.error, `Parameters as JSON: ${e.message}`);
        return;
      }
    }
    for (const [name, f] of this.fields ?? []) {
      const value = f.value();
      if (value !== undefined) params[name] = value;
    }
    const body = { task: this.task.value, params, priority: Number(this.priority.value || 0) };
    if (this.delay.value.trim()) body.delay = this.delay.value.trim();
    if (this.key.value.trim()) body.key = this.key.value.trim();
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api.post(api.path("jobs"), body);
      this.ctx.notify(`Queued job #${job.id} (${job.task})`);
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      const beside = e.param ? this.fields?.get(e.param) : undefined;
      if (beside) beside.refused(e.message); // shown beside the field it is about
      else if (e.status !== 401) fill(this.error, e.message);
    } finally {
      button.disabled = false;
    }
  }
}

// One parameter's field, typed by its rules: a select for choices, a number for int and number,
// a checkbox for bool, text otherwise. value() is what to send (undefined: leave it out, so the
// task's default applies); refused(message) shows the daemon's refusal beside it.
function paramField(p) {
  const optional = !p.required;
  let control;
  if (p.choices) {
    control = h("select", { name: p.name, required: p.required },
      optional && p.default === null ? h("option", { value: "" }, "—") : null,
      p.choices.map((c) => h("option", { value: JSON.stringify(c), selected: c === p.default }, String(c))));
  } else if (p.type === "bool") {
    control = h("input", { name: p.name, type: "checkbox", checked: p.default === true });
  } else if (p.type === "int" || p.type === "number") {
    control = h("input", {
      name: p.name, type: "number", required: p.required, step: p.type === "int" ? "1" : "any",
      min: p.min ?? undefined, max: p.max ?? undefined, value: p.default ?? undefined,
    });
  } else {
    control = h("input", {
      name: p.name, required: p.required, maxlength: p.max_length ?? undefined,
      value: p.default ?? undefined, placeholder: p.pattern ? `pattern ${p.pattern}` : undefined,
    });
  }
  control.dataset.param = p.name;
  const error = h("p", { class: "error field-error", role: "alert", id: `param-error-${p.name}` });
  control.setAttribute("aria-describedby", error.id);
  const label = optional ? `${p.name} (optional)` : p.name;
  const element = h("div", { class: "param" }, field(label, control),
    p.description ? h("p", { class: "muted hint" }, p.description) : null, error);
  return {
    element,
    value() {
      if (p.type === "bool") return control.checked;
      if (control.value === "") return p.required && !p.choices ? "" : undefined;
      if (p.choices) return JSON.parse(control.value);
      if (p.type === "int" || p.type === "number") return Number(control.value);
      return control.value; // text, as typed
    },
    refused(message) {
      fill(error, message ?? "");
      if (message) {
        control.setAttribute("aria-invalid", "true");
        control.focus();
      } else control.removeAttribute("aria-invalid");
    },
  };
}

// One job, kept current by its events; a running job's output follows as it is written.
export class JobView {
  constructor(ctx) {
    this.ctx = ctx;
    this.load = serial(() => this.read());
    this.id = null;
    this.title = h("h2", { id: "job-title" });
    this.state = h("span", { class: "job-state" });
    const button = (action, text, done) =>
      h("button", { type: "button", onclick: (e) => this.act(e.currentTarget, action, done) }, text);
    this.cancel = button("cancel", "Cancel", "Cancelled");
    this.retry = button("retry", "Retry", "Queued again");
    this.summary = h("dl", { class: "summary" });
    this.params = h("tbody");
    this.errorText = h("pre", { class: "output error-output", "aria-label": "Error text" });
    this.errorSection = part("job-error", "Error", this.errorText);
    this.resultText = h("pre", { class: "output", "aria-label": "Result value" });
    this.resultSection = part("job-result", "Result", this.resultText);
    this.output = new Follower("Job output");
    const attempts = h("tbody");
    this.attempts = new Rows(attempts, (a) => a.number, attemptRow, "No attempt has ended yet.");
    this.element = h(
      "section",
      { "aria-labelledby": "job-title" },
      h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
      h("div", { class: "view-head" },
        this.title, this.state, h("div", { class: "actions" }, this.cancel, this.retry)),
      this.summary,
      part("job-params", "Parameters", grid("params", ["Name", "Value"], this.params)),
      this.errorSection,
      this.resultSection,
      part("job-output", "Output", this.output.element),
      part("job-attempts", "Attempts", grid("attempts", ["#", ...ATTEMPT_COLUMNS], attempts)),
    );
    this.reloadSoon = coalesce(() => this.load().catch(ctx.failed), 100);
  }

  async show(route) {
    const id = Number(route.parts[0]);
    if (id !== this.id) {
      this.output.stop();
      this.output.clear();
    }
    this.id = id;
    fill(this.title, `Job #${id}`);
    await this.load();
  }

  hide() {
    this.output.stop();
  }

  async read() {
    const id = this.id;
    const job = await api.get(api.path("jobs", id));
    if (id === this.id) this.render(job);
  }

  event(e) {
    if (e.type === "job" && e.job.id === this.id) this.reloadSoon();
  }

  render(job) {
    fill(this.state, badge(job.state));
    this.cancel.hidden = !["queued", "running"].includes(job.state);
    this.retry.hidden = !["failed", "cancelled"].includes(job.state);
    const facts = [
      ["Task", job.task],
      ["Queue", job.queue],
      ["Attempt", `${job.attempt} of ${job.max_attempts}`],
      ["Priority", job.priority],
      ["Run at", fmt.time(job.run_at)],
      ["Created", fmt.time(job.created_at)],
      ["Started", fmt.time(job.started_at)],
      ["Finished", fmt.time(job.finished_at)],
      ["Exit code", job.exit_code ?? "—"],
      ["Node", job.node ?? "—"],
      ["Key", job.key ?? "—"],
      ["Schedule", job.schedule ? `${job.schedule} (slot ${fmt.time(job.slot)})` : "—"],
    ];
    fill(this.summary, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
    const params = Object.entries(job.params);
    const param = ([name, value]) =>
      h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, h("code", {}, fmt.value(value))));
    const none = h("tr", { class: "empty" }, h("td", { colspan: "2" }, "none"));
    fill(this.params, params.length ? params.map(param) : none);
    this.errorSection.hidden = !job.error;
    fill(this.errorText, job.error ?? "");
    this.resultSection.hidden = job.result === null || job.result === undefined;
    fill(this.resultText, fmt.value(job.result ?? null));
    if (job.state === "running") {
      if (!this.output.following) {
        this.output.follow(`${api.path("jobs", job.id, "logs")}?tail=1000&follow=1`, () => this.reloadSoon());
      }
    } else {
      this.output.stop();
      this.output.clear();
      this.output.append(job.output || "");
    }
    this.attempts.set(job.attempts ?? []);
  }

  async act(button, action, done) {
    await this.ctx.act(button, async () => {
      await api.post(api.path("jobs", this.id, action));
      await this.load(); // the answer is the job without its attempts: read it whole
      return `${done}: job #${this.id}`;
    });
  }
}

const ATTEMPT_COLUMNS = ["Outcome", "Started", "Finished", "Exit code", "Error", "Node"]; // after "#"

function attemptRow(a) {
  const cells = ATTEMPT_COLUMNS.map((label) => h("td", { "data-label": label }));
  const tr = h("tr", {}, h("th", { scope: "row" }, a.number), cells);
  return {
    tr,
    update(x) {
      const [outcome, started, finished, exit, error, node] = cells;
      fill(outcome, badge(x.outcome));
      fill(started, fmt.time(x.started_at));
      fill(finished, fmt.time(x.finished_at));
      fill(exit, x.exit_code ?? "—");
      fill(error, x.error ?? "");
      fill(node, x.node ?? "—");
    },
  };
}
