// Talking to the daemon: JSON requests and server-sent event streams, each with the token in
// an Authorization header. EventSource cannot send headers, so streams are read with fetch();
// the token never goes into a URL (where it would land in logs and history).
//
// Paths are relative ("api/v1/…"), so the page also works behind a proxy under a sub-path.

const TOKEN_KEY = "stoker.token";

export class ApiError extends Error {
  // param: the job parameter a refusal is about (shown beside its field), when there is one
  constructor(status, code, message, param = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

// Kept for this tab only: sessionStorage is not shared with other tabs and is gone when the
// tab closes. No cookie is ever set, so another site cannot make the browser send it (no CSRF).
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  forget: () => sessionStorage.removeItem(TOKEN_KEY),
};

// Called with the ApiError whenever the daemon answers 401 (set by main.js).
export const on = { unauthorized: () => {} };

function headers(extra = {}) {
  const t = token.get();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

async function failure(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`;
  let param = null;
  try {
    const body = await response.json();
    ({ code, message } = body.error);
    param = body.error.param ?? null;
  } catch {
    // not the JSON error shape (a proxy's page): keep the status line
  }
  const error = new ApiError(response.status, code, message, param);
  if (response.status === 401) on.unauthorized(error);
  return error;
}

export async function request(method, path, body) {
  const init = { method, cache: "no-store", headers: headers() };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

// Read a text/event-stream: onEvent({event, data}) for each event (data parsed as JSON), until
// the server ends it (resolves) or `signal` aborts it (rejects with an AbortError).
export async function stream(path, onEvent, signal) {
  const response = await fetch(path, {
    cache: "no-store",
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parse(block);
      if (event) onEvent(event);
    }
  }
}

function parse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

// "api/v1/programs/" + a name, safely
export function path(...parts) {
  return ["api/v1", ...parts.map((p) => encodeURIComponent(String(p)))].join("/");
}
