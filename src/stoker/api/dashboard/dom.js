// Building the page safely: whatever comes from the API (job output, parameters, errors) goes
// into the page as text (text nodes, textContent, attribute values), never as HTML.

// h("button", {class: "act", onclick: f, "aria-label": "Stop mailer:0"}, "Stop")
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...nodes(children));
  return el;
}

// Replace an element's children (strings become text nodes).
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

// A coloured label for a state ("running", "failed", "paused" …); the word itself is always
// shown, so the colour is never the only way to tell.
export function badge(state) {
  return h("span", { class: `state state-${state.replace(/\W+/g, "-")}` }, state);
}

// Run `fn` once, `ms` after the first of a burst of calls: many events, one fetch. (Not
// "after the last": a steady stream of events would put it off for ever.)
export function coalesce(fn, ms) {
  let timer = null;
  return () => {
    timer ??= setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

// The rows of a table body, kept by key and updated in place, so that a button is never
// replaced under the pointer by a live update. make(item) returns {tr, update(item)}.
export class Rows {
  constructor(tbody, key, make, empty) {
    this.tbody = tbody;
    this.key = key;
    this.make = make;
    this.rows = new Map();
    this.empty = h("tr", { class: "empty" }, h("td", { colspan: "99" }, empty));
  }

  set(items) {
    const seen = new Set();
    let before = this.tbody.firstChild;
    for (const item of items) {
      const key = this.key(item);
      let row = this.rows.get(key);
      if (!row) {
        row = this.make(item);
        this.rows.set(key, row);
      }
      row.update(item);
      seen.add(key);
      if (row.tr !== before) this.tbody.insertBefore(row.tr, before);
      before = row.tr.nextSibling;
    }
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        this.rows.delete(key);
      }
    }
    if (items.length) this.empty.remove();
    else this.tbody.append(this.empty);
  }

  get(key) {
    return this.rows.get(key);
  }
}

// Wrap a view's load so that loads never overlap and none asked for is lost: a call made while
// one runs makes it run once more after (an answer read before an event must not overwrite
// what that event said). `.busy` tells whether one is running.
export function serial(load) {
  let running = null;
  let again = false;
  const run = () => {
    if (running) {
      again = true;
      return running;
    }
    run.busy = true;
    running = (async () => {
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        running = null;
        run.busy = false;
      }
    })();
    return running;
  };
  run.busy = false;
  return run;
}

let ids = 0;

// A labelled form control: <label for=…>text</label> beside the control (a label wrapped around
// a <select> would take the options' text into its name).
export function field(text, control) {
  if (!control.id) control.id = `field-${++ids}`;
  return h("div", { class: "field" }, h("label", { for: control.id }, text), control);
}

// A table with column headings over `tbody`.
export function grid(kind, columns, tbody) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c))));
  return h("table", { class: `grid ${kind}` }, head, tbody);
}

// A part of a view, headed by an h3 that also names it as a region.
export function part(id, title, ...content) {
  return h("section", { "aria-labelledby": id }, h("h3", { id }, title), ...content);
}
