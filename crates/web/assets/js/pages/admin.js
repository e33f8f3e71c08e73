// Administration and settings: code host connections and repository sync status, executors,
// secrets (names only; values are never shown back), access tokens and the template library.
// Every list comes from the API, so a user who is not a site admin sees what they may see.

import { del, enc, get, post, put, query } from "../api.js";
import { badge, field, fill, h, link } from "../dom.js";
import { dateTime } from "../format.js";

const SECTIONS = [
  ["code-hosts", "Code hosts"],
  ["executors", "Executors"],
  ["secrets", "Secrets"],
  ["tokens", "Tokens"],
  ["templates", "Templates"],
];

export async function render(main, params, context) {
  const section = params.section || "code-hosts";
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Admin sections" },
    h("ul", {}, SECTIONS.map(([name, text]) => h("li", {}, link(`/admin/${name}`, h("span", { "aria-current": name === section ? "page" : false }, text))))),
  );
  const body = h("div");
  fill(main, h("h1", {}, context.me.siteAdmin ? "Admin" : "Settings"), tabs, body);
  const draw = { "code-hosts": codeHosts, executors, secrets, tokens, templates }[section];
  if (!draw) {
    fill(body, h("p", {}, "Unknown section."));
    return;
  }
  await draw(body, context, () => draw(body, context));
}

function table(headings, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { class: "data" }, h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))), h("tbody", {}, rows));
}

async function codeHosts(body, { me, toast }, again) {
  const [hosts, repositories] = await Promise.all([get("/api/v1/code-hosts"), get(`/api/v1/repositories${query({ limit: 200 })}`)]);
  const syncButton = me.siteAdmin
    ? h(
        "button",
        {
          type: "button",
          onclick: async () => {
            try {
              await post("/api/v1/repositories/sync", { wait: false });
              toast("Syncing every repository in the background.");
            } catch (error) {
              toast(error.message, "error");
            }
          },
        },
        "Sync all repositories now",
      )
    : null;
  fill(
    body,
    h("h2", {}, "Code host connections"),
    table(
      ["Name", "Kind", "URL", "Connection credential", "My credential"],
      hosts.map((host) => h("tr", {}, h("th", { scope: "row" }, host.name), h("td", {}, host.kind), h("td", {}, host.url || "—"), h("td", {}, host.hasCredential ? "set" : "none"), h("td", {}, host.hasMyCredential ? "set" : "none"))),
      "No code host is connected yet. Add one with `flotilla codehost add`.",
    ),
    h("div", { class: "page-header" }, h("h2", {}, "Repositories"), syncButton),
    table(
      ["Repository", "Mirror", "Default branch", "Last synced", "Error"],
      repositories.map((repository) =>
        h("tr", {}, h("th", { scope: "row" }, repository.name), h("td", {}, badge(repository.mirrorState)), h("td", {}, repository.defaultBranch || "—"), h("td", {}, dateTime(repository.lastSyncedAtMs)), h("td", { class: "error small" }, repository.lastError || "")),
      ),
      "No repositories yet.",
    ),
    repositories.length === 200 ? h("p", { class: "muted" }, "The first 200 repositories are shown; `flotilla repos list` lists them all.") : null,
  );
}

async function executors(body, { me }) {
  if (!me.siteAdmin) {
    fill(body, h("p", {}, "Only site admins see the executors."));
    return;
  }
  const list = await get("/api/v1/executors");
  fill(
    body,
    h("h2", {}, "Executors"),
    table(
      ["Name", "State", "Version", "Host", "Labels", "Running jobs", "Last seen"],
      list.map((executor) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, executor.name),
          h("td", {}, badge(executor.alive ? "alive" : "lost", executor.alive ? "alive" : "not seen lately")),
          h("td", {}, executor.version),
          h("td", {}, `${executor.hostname} (${executor.os}/${executor.architecture})`),
          h("td", {}, Object.entries(executor.labels || {}).map(([name, value]) => h("code", { class: "label" }, `${name}=${value}`))),
          h("td", { class: "number" }, executor.runningJobs),
          h("td", {}, dateTime(executor.lastSeenAtMs)),
        ),
      ),
      "No executor has connected in the last week. Start one with `flotilla executor --url … --token …`.",
    ),
  );
}

async function secrets(body, { me, toast }, again) {
  const namespaces = [...me.namespaces.map((item) => item.name), ...(me.siteAdmin ? ["global"] : [])];
  const lists = await Promise.all(namespaces.map((namespace) => get(`/api/v1/secrets${query({ namespace })}`).catch(() => [])));
  const all = lists.flat();
  const name = h("input", { name: "secret-name", required: true, pattern: "[A-Za-z_][A-Za-z0-9_]*", autocomplete: "off" });
  const value = h("input", { name: "secret-value", type: "password", required: true, autocomplete: "new-password" });
  const scope = h("select", { name: "secret-namespace" }, namespaces.map((namespace) => h("option", { value: namespace }, namespace)));
  fill(
    body,
    h("h2", {}, "Secrets"),
    h("p", { class: "muted" }, "Steps read secrets through bare `env` names. Values are encrypted and never shown again."),
    table(
      ["Name", "Namespace", "Version", "Updated", ""],
      all.map((secret) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, h("code", {}, secret.name)),
          h("td", {}, secret.namespace),
          h("td", { class: "number" }, secret.version),
          h("td", {}, dateTime(secret.updatedAtMs)),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "small danger",
                "aria-label": `Delete secret ${secret.name}`,
                onclick: async () => {
                  if (!confirm(`Delete the secret ${secret.name}?`)) return;
                  try {
                    await del(`/api/v1/secrets/${enc(secret.name)}${query({ namespace: secret.namespace })}`);
                    again();
                  } catch (error) {
                    toast(error.message, "error");
                  }
                },
              },
              "Delete",
            ),
          ),
        ),
      ),
      "No secrets yet.",
    ),
    h(
      "form",
      {
        class: "card inline-form",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            await put(`/api/v1/secrets/${enc(name.value)}${query({ namespace: scope.value })}`, { value: value.value });
            value.value = "";
            toast(`Saved ${name.value}.`);
            again();
          } catch (error) {
            toast(error.message, "error");
          }
        },
      },
      h("h3", {}, "Set a secret"),
      field("Name", name),
      field("Value", value),
      field("Namespace", scope),
      h("button", { type: "submit", class: "primary" }, "Save secret"),
    ),
  );
}

async function tokens(body, { me, toast }, again) {
  const list = await get("/api/v1/tokens");
  const note = h("input", { name: "token-note", autocomplete: "off" });
  const scope = h("select", { name: "token-scope" }, h("option", { value: "user" }, "user"), me.siteAdmin ? h("option", { value: "site-admin" }, "site-admin") : null);
  const created = h("div", { "aria-live": "polite" });
  fill(
    body,
    h("h2", {}, "Access tokens"),
    table(
      ["Note", "Scope", "Created", "Last used", "Expires", ""],
      list
        .filter((token) => !token.revoked)
        .map((token) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, token.note || h("span", { class: "muted" }, "(no note)")),
            h("td", {}, token.scope),
            h("td", {}, dateTime(token.createdAtMs)),
            h("td", {}, dateTime(token.lastUsedAtMs)),
            h("td", {}, token.expiresAtMs ? dateTime(token.expiresAtMs) : "never"),
            h(
              "td",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "small danger",
                  "aria-label": `Revoke token ${token.note || token.id}`,
                  onclick: async () => {
                    if (!confirm("Revoke this token? Anything using it stops working.")) return;
                    try {
                      await del(`/api/v1/tokens/${token.id}`);
                      again();
                    } catch (error) {
                      toast(error.message, "error");
                    }
                  },
                },
                "Revoke",
              ),
            ),
          ),
        ),
      "No active tokens.",
    ),
    h(
      "form",
      {
        class: "card inline-form",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            const token = await post("/api/v1/tokens", { note: note.value, scope: scope.value });
            await again();
            fill(body.querySelector("[data-created]") || created, h("p", {}, "Copy the new token now; it is not shown again: "), h("code", { class: "secret-once" }, token.token));
          } catch (error) {
            toast(error.message, "error");
          }
        },
      },
      h("h3", {}, "Create a token"),
      field("Note", note),
      field("Scope", scope),
      h("button", { type: "submit", class: "primary" }, "Create token"),
    ),
    h("div", { dataset: { created: "" }, "aria-live": "polite" }),
  );
}

async function templates(body, { me, toast }, again) {
  const list = await get("/api/v1/batch-templates");
  const name = h("input", { name: "template-name", required: true, autocomplete: "off" });
  const description = h("input", { name: "template-description", autocomplete: "off" });
  const spec = h("textarea", { name: "template-spec", class: "code", rows: 12, required: true, spellcheck: "false" });
  fill(
    body,
    h("h2", {}, "Template library"),
    table(
      ["Name", "Description", "Origin", ""],
      list.map((template) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, link(`/batch-changes/new?template=${enc(template.name)}`, template.name)),
          h("td", {}, template.description),
          h("td", {}, template.builtIn ? "shipped with Flotilla" : "added by an admin"),
          h(
            "td",
            {},
            !template.builtIn && me.siteAdmin
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "small danger",
                    onclick: async () => {
                      try {
                        await del(`/api/v1/batch-templates/${enc(template.name)}`);
                        again();
                      } catch (error) {
                        toast(error.message, "error");
                      }
                    },
                  },
                  "Delete",
                )
              : null,
          ),
        ),
      ),
      "No templates.",
    ),
    me.siteAdmin
      ? h(
          "form",
          {
            class: "card",
            onsubmit: async (event) => {
              event.preventDefault();
              try {
                await post("/api/v1/batch-templates", { name: name.value, description: description.value, spec: spec.value });
                toast(`Added ${name.value}.`);
                again();
              } catch (error) {
                toast(error.message, "error");
              }
            },
          },
          h("h3", {}, "Add a template"),
          field("Name", name),
          field("Description", description, "Leave empty to use the spec's description."),
          field("Batch spec", spec),
          h("button", { type: "submit", class: "primary" }, "Add template"),
        )
      : null,
  );
}
