// The client: a small router over the History API. Each page module exports
// `render(main, params, context)` and may return a function that stops what it started
// (timers, live log streams) when the user leaves the page.

import { api, get, whenUnauthorized } from "./api.js";
import { fill, h, link } from "./dom.js";

const routes = [
  [/^\/sign-in$/, () => import("./pages/sign_in.js"), [], { public: true }],
  [/^\/(?:batch-changes\/?)?$/, () => import("./pages/batch_changes.js"), []],
  [/^\/batch-changes\/new$/, () => import("./pages/create.js"), []],
  [/^\/batch-changes\/([^/]+)\/([^/]+)$/, () => import("./pages/batch_change.js"), ["namespace", "name"]],
  [/^\/batch-specs\/([^/]+)$/, () => import("./pages/execution.js"), ["id"]],
  [/^\/batch-specs\/([^/]+)\/preview$/, () => import("./pages/preview.js"), ["id"]],
  [/^\/admin(?:\/([a-z-]+))?$/, () => import("./pages/admin.js"), ["section"]],
];

const main = document.getElementById("main");
let leave = null;
let me = null;

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render({ moveFocus: !replace });
}

export function toast(message, kind = "info") {
  const element = document.getElementById("toast");
  fill(element, h("p", { class: `toast-${kind}` }, message));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => fill(element), 6000);
}

async function signOut() {
  try {
    await api("DELETE", "/api/v1/sessions/current");
  } catch {
    // Already signed out.
  }
  me = null;
  navigate("/sign-in");
}

function header() {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (!me) {
    fill(nav);
    fill(account);
    return;
  }
  const here = location.pathname;
  const item = (href, text, active) => h("li", {}, h("a", { href, "data-link": true, "aria-current": active ? "page" : false }, text));
  fill(
    nav,
    h(
      "ul",
      {},
      item("/", "Batch changes", here === "/" || (here.startsWith("/batch-") && here !== "/batch-changes/new")),
      item("/batch-changes/new", "Create", here === "/batch-changes/new"),
      item("/admin", me.siteAdmin ? "Admin" : "Settings", here.startsWith("/admin")),
    ),
  );
  fill(account, h("span", { class: "muted" }, `Signed in as ${me.username}`), " ", h("button", { type: "button", class: "link-button", onclick: signOut }, "Sign out"));
}

async function render({ moveFocus = false } = {}) {
  if (leave) {
    try {
      leave();
    } catch (error) {
      console.error(error);
    }
    leave = null;
  }
  const path = location.pathname;
  const route = routes.find(([pattern]) => pattern.test(path));
  if (!route) {
    header();
    fill(main, h("h1", {}, "Page not found"), h("p", {}, "Nothing lives at ", h("code", {}, path), ". ", link("/", "Go to the batch changes"), "."));
    return;
  }
  const [pattern, load, names, options = {}] = route;
  if (!options.public && !me) {
    try {
      me = await get("/api/v1/me");
    } catch (error) {
      if (error.status === 401) {
        navigate(`/sign-in?next=${encodeURIComponent(path + location.search)}`, { replace: true });
        return;
      }
      fill(main, h("p", { class: "error", role: "alert" }, error.message));
      return;
    }
  }
  header();
  const match = path.match(pattern);
  const params = Object.fromEntries(names.map((name, index) => [name, match[index + 1] ? decodeURIComponent(match[index + 1]) : undefined]));
  for (const [name, value] of new URLSearchParams(location.search)) params[name] = value;
  fill(main, h("p", { class: "muted" }, "Loading…"));
  try {
    const page = await load();
    const context = {
      me,
      navigate,
      toast,
      signedIn: (user) => {
        me = user;
      },
    };
    const cleanup = await page.render(main, params, context);
    if (typeof cleanup === "function") leave = cleanup;
    const heading = main.querySelector("h1");
    if (heading) document.title = `${heading.textContent} · Flotilla`;
    // A screen reader starts reading the new page, as after a full page load, unless the
    // page put the focus somewhere itself (the sign-in form, an editor).
    if (moveFocus && (document.activeElement === document.body || !main.contains(document.activeElement))) main.focus({ preventScroll: false });
  } catch (error) {
    console.error(error);
    fill(main, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, error.message));
  }
}

whenUnauthorized(() => {
  me = null;
  if (location.pathname !== "/sign-in") navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
});

document.addEventListener("click", (event) => {
  const anchor = event.target.closest && event.target.closest("a[data-link]");
  if (!anchor || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => render({ moveFocus: true }));
render();
