// The dashboard's entry: sign-in, the views, and the live event stream that keeps them current.

import * as api from "./api.js";
import { ChartsView } from "./charts.js";
import { fill } from "./dom.js";
import { JobsView, JobView } from "./jobs.js";
import { ProgramsView } from "./programs.js";
import { QueuesView } from "./queues.js";
import { SchedulesView } from "./schedules.js";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What the views share: saying what happened, and running a button's action.
const ctx = {
  notify(text, kind = "ok") {
    const notice = $("notice");
    notice.className = `notice ${kind}`;
    fill(notice, text);
    clearTimeout(ctx.timer);
    ctx.timer = setTimeout(() => fill(notice), 8000);
  },
  failed(error) {
    if (error.status !== 401) ctx.notify(error.message, "error"); // 401: the sign-in form says it
  },
  // Disable the button while `work` runs; show the text it returns, or its error.
  async act(button, work) {
    button.disabled = true;
    try {
      ctx.notify(await work());
    } catch (error) {
      ctx.failed(error);
    } finally {
      button.disabled = false;
    }
  },
};

const views = {
  programs: new ProgramsView(ctx),
  jobs: new JobsView(ctx),
  job: new JobView(ctx),
  queues: new QueuesView(ctx),
  schedules: new SchedulesView(ctx),
  charts: new ChartsView(ctx),
};
let current = null;
let events = null; // the AbortController of the event stream

// "#/jobs?state=failed" → the jobs view with its query; "#/jobs/42" → job 42.
function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  let name = views[parts[0]] ? parts[0] : "programs";
  if (name === "jobs" && parts[1]) name = "job";
  return { name, view: views[name], parts: parts.slice(1), query: new URLSearchParams(query) };
}

async function showRoute() {
  const next = route();
  if (current && current !== next.view) current.hide();
  current = next.view;
  if ($("views").firstChild !== current.element) fill($("views"), current.element); // keep focus
  const section = next.name === "job" ? "jobs" : next.name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${section[0].toUpperCase()}${section.slice(1)} · stoker`;
  try {
    await current.show(next);
  } catch (error) {
    ctx.failed(error);
  }
}

function setLive(state, text) {
  const live = $("live");
  live.dataset.state = state;
  fill(live, text);
}

// The daemon's state changes, for as long as the page is signed in. After a break (daemon
// restarted, network) it reconnects, and the view reads everything again: whatever changed
// meanwhile was not seen. A page that fell too far behind (a hidden tab, a slow link) is
// dropped by the daemon with a last `lagged` event: it reconnects at once.
async function listen() {
  const controller = new AbortController();
  events = controller;
  let delay = 500;
  while (!controller.signal.aborted) {
    setLive("connecting", "connecting…");
    let lagged = false;
    try {
      await api.stream(
        api.path("events"),
        ({ data }) => {
          lagged = data.type === "lagged";
          if (data.type === "connected" || lagged) {
            setLive("live", "live");
            delay = 500;
            current?.show(route()).catch(ctx.failed);
          } else {
            current?.event(data);
          }
        },
        controller.signal,
      );
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
    }
    if (lagged && !controller.signal.aborted) continue; // dropped for lagging: at once
    setLive("offline", "disconnected: retrying");
    await sleep(delay);
    delay = Math.min(delay * 2, 10_000);
  }
}

function start(status) {
  $("login").hidden = true;
  $("app").hidden = false;
  $("live").hidden = false;
  fill($("daemon"), `${status.node} · stoker ${status.version}`);
  $("logout").hidden = !api.token.get();
  showRoute();
  listen();
}

function signOut(message) {
  events?.abort();
  current?.hide();
  current = null;
  api.token.forget();
  $("app").hidden = true;
  $("live").hidden = true;
  $("login").hidden = false;
  fill($("login-error"), message);
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  api.token.set($("token").value.trim());
  $("token").value = "";
  try {
    start(await api.get(api.path("status")));
  } catch (error) {
    if (error.status !== 401) fill($("login-error"), error.message);
  }
}

api.on.unauthorized = () => signOut(api.token.get() ? "The daemon did not accept that token." : "");
$("login").addEventListener("submit", signIn);
$("logout").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", () => {
  if (current) showRoute();
});
setInterval(() => current?.tick?.(), 1000); // uptimes and "in 4m": a clock, no request

try {
  start(await api.get(api.path("status")));
} catch (error) {
  if (error.status !== 401) {
    $("login").hidden = true;
    fill($("notice"), `Cannot reach the daemon: ${error.message}`);
  }
}
