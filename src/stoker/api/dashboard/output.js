// Output that follows: a program's log or a running job's output, read as server-sent events.

import * as api from "./api.js";
import { fill, h } from "./dom.js";

const KEEP = 256 * 1024; // characters kept on the page; older output is dropped from the top

export class Follower {
  constructor(label) {
    this.element = h("pre", { class: "output", tabindex: "0", "aria-label": label });
    this.controller = null;
    this.length = 0;
  }

  // Show the stream at `path` (its tail first, then what is added) until stop() or until the
  // server ends it; onEnd(data) for an "end" event (a job's output ends with its state).
  async follow(path, onEnd = () => {}) {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.clear();
    try {
      await api.stream(
        path,
        ({ event, data }) => (event === "end" ? onEnd(data) : this.append(data.text)),
        controller.signal,
      );
    } catch (error) {
      if (error.name !== "AbortError") this.append(`\n[dashboard] output stopped: ${error.message}\n`);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  get following() {
    return this.controller !== null;
  }

  clear() {
    fill(this.element);
    this.length = 0;
  }

  append(text) {
    const pre = this.element;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(text);
    this.length += text.length;
    if (this.length > KEEP * 1.5) {
      pre.textContent = pre.textContent.slice(-KEEP);
      this.length = KEEP;
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}
