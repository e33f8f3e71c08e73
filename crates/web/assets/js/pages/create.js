// Create: pick a template, name the batch change and its namespace, edit the spec with
// validation as you type (problems shown at their lines) and the live list of the
// workspaces it resolves to, where a single workspace can be excluded. Running it creates
// the batch spec and opens its execution page.

import { get, post } from "../api.js";
import { clear, field, fill, h } from "../dom.js";
import { plural } from "../format.js";

/** The spec with `repository` left out: `-repo:^name$` added to every
 * `repositoriesMatchingQuery`, and `- repository: name` entries removed. Returns null when
 * the spec has neither (the user edits `on:` by hand then). */
export function excludeRepository(spec, repository) {
  const pattern = `-repo:^${repository.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`;
  let changed = false;
  const lines = spec.split("\n");
  const out = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index];
    const query = line.match(/^(\s*-?\s*repositoriesMatchingQuery:\s*)(\S.*?)\s*$/);
    if (query && !/^[|>]/.test(query[2])) {
      const value = query[2];
      const quote = value[0] === '"' || value[0] === "'" ? value[0] : "";
      if (quote && value.endsWith(quote) && value.length > 1) {
        const inner = value.slice(1, -1);
        const added = quote === '"' ? pattern.replace(/\\/g, "\\\\") : pattern;
        out.push(`${query[1]}${quote}${inner} ${added}${quote}`);
      } else {
        out.push(`${query[1]}${value} ${pattern}`);
      }
      changed = true;
      continue;
    }
    const entry = line.match(/^(\s*)-\s*repository:\s*["']?([^"'\s]+)["']?\s*$/);
    if (entry && entry[2] === repository) {
      // Drop the entry and the lines that belong to it (indented deeper than its dash).
      const indent = entry[1].length;
      while (index + 1 < lines.length && lines[index + 1].trim() !== "" && lines[index + 1].search(/\S/) > indent) index++;
      changed = true;
      continue;
    }
    out.push(line);
  }
  return changed ? out.join("\n") : null;
}

/** The spec with its top-level `name:` set. */
export function withName(spec, name) {
  if (/^name:.*$/m.test(spec)) return spec.replace(/^name:.*$/m, `name: ${name}`);
  return `name: ${name}\n${spec}`;
}

function debounce(action, wait) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), wait);
  };
}

export async function render(main, params, { me, navigate, toast }) {
  const templates = await get("/api/v1/batch-templates");
  let generation = 0;
  let stopped = false;

  const nameInput = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]+", autocomplete: "off", spellcheck: "false" });
  const namespaceSelect = h("select", { name: "namespace" }, me.namespaces.map((item) => h("option", { value: item.name, selected: item.name === params.namespace }, item.name)));
  const editor = h("textarea", { name: "spec", class: "code", spellcheck: "false", autocomplete: "off", wrap: "off", rows: 24, "aria-describedby": "diagnostics-summary" });
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const summary = h("p", { id: "diagnostics-summary", class: "muted", "aria-live": "polite" }, "Pick a template or write a spec.");
  const diagnosticsList = h("ul", { class: "diagnostics", "aria-label": "Problems in the spec" });
  const workspacesSummary = h("p", { class: "muted", "aria-live": "polite" });
  const workspacesBody = h("tbody");
  const runButton = h("button", { type: "submit", class: "primary", disabled: true }, "Run batch spec");
  let errorLines = new Set();
  let warningLines = new Set();
  // Line → the messages of its problems, shown when pointing at the marked line number.
  let messages = new Map();

  const drawGutter = () => {
    const count = editor.value.split("\n").length;
    clear(gutter);
    for (let line = 1; line <= count; line++) {
      const kind = errorLines.has(line) ? "error" : warningLines.has(line) ? "warning" : "";
      gutter.append(h("span", { class: kind ? `gutter-line ${kind}` : "gutter-line", title: messages.get(line) }, String(line)), "\n");
    }
    gutter.scrollTop = editor.scrollTop;
  };
  editor.addEventListener("scroll", () => (gutter.scrollTop = editor.scrollTop));

  const goToLine = (line, column) => {
    const lines = editor.value.split("\n");
    let offset = 0;
    for (let index = 0; index < line - 1 && index < lines.length; index++) offset += lines[index].length + 1;
    offset += Math.max(0, column - 1);
    editor.focus();
    editor.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(editor).lineHeight) || 18;
    editor.scrollTop = Math.max(0, (line - 3) * lineHeight);
  };

  const resolve = async (spec, mine) => {
    workspacesSummary.textContent = "Finding the workspaces…";
    try {
      const workspaces = await post("/api/v1/batch-specs/resolve", { spec });
      if (mine !== generation || stopped) return;
      const used = workspaces.filter((workspace) => !workspace.ignored);
      workspacesSummary.textContent = `${plural(used.length, "workspace")} in ${plural(new Set(used.map((workspace) => workspace.repository)).size, "repository", "repositories")}${workspaces.length > used.length ? `, ${workspaces.length - used.length} ignored by .batchignore` : ""}.`;
      fill(
        workspacesBody,
        workspaces.length
          ? workspaces.slice(0, 500).map((workspace) =>
              h(
                "tr",
                { dataset: { repository: workspace.repository } },
                h("th", { scope: "row" }, workspace.repository),
                h("td", {}, workspace.path || "/"),
                h("td", {}, workspace.branch),
                h("td", {}, workspace.ignored ? "ignored" : workspace.skippedSteps.length ? `skips steps ${workspace.skippedSteps.map((step) => step + 1).join(", ")}` : ""),
                h(
                  "td",
                  {},
                  h(
                    "button",
                    {
                      type: "button",
                      class: "small",
                      "aria-label": `Exclude ${workspace.repository}`,
                      onclick: () => {
                        const edited = excludeRepository(editor.value, workspace.repository);
                        if (edited === null) {
                          toast("This spec lists its repositories in a way that cannot be edited automatically; change `on:` by hand.", "error");
                          return;
                        }
                        editor.value = edited;
                        changed();
                      },
                    },
                    "Exclude",
                  ),
                ),
              ),
            )
          : h("tr", {}, h("td", { colspan: 5, class: "empty" }, "The spec matches no repository.")),
      );
      if (workspaces.length > 500) workspacesBody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, `…and ${workspaces.length - 500} more.`)));
    } catch (error) {
      if (mine !== generation || stopped) return;
      workspacesSummary.textContent = error.message;
      fill(workspacesBody);
    }
  };

  const validate = debounce(async () => {
    const mine = ++generation;
    const spec = editor.value;
    try {
      const result = await post("/api/v1/batch-specs/validate", { spec });
      if (mine !== generation || stopped) return;
      errorLines = new Set(result.diagnostics.filter((item) => item.severity === "error").map((item) => item.line));
      warningLines = new Set(result.diagnostics.filter((item) => item.severity === "warning").map((item) => item.line));
      messages = new Map();
      for (const item of result.diagnostics) messages.set(item.line, [messages.get(item.line), `${item.severity}: ${item.message}`].filter(Boolean).join("\n"));
      drawGutter();
      fill(
        diagnosticsList,
        result.diagnostics.map((item) =>
          h(
            "li",
            { class: `diagnostic ${item.severity}` },
            h("button", { type: "button", class: "link-button", onclick: () => goToLine(item.line, item.column) }, `Line ${item.line}, column ${item.column}`),
            `: ${item.severity}: ${item.path ? item.path + ": " : ""}${item.message}`,
          ),
        ),
      );
      const errors = result.diagnostics.filter((item) => item.severity === "error").length;
      summary.textContent = result.valid ? `The spec is valid (${plural(result.steps, "step")}).` : `${plural(errors, "problem")} to fix.`;
      summary.className = result.valid ? "ok" : "error";
      runButton.disabled = !result.valid;
      if (result.valid && result.name && nameInput.value !== result.name && document.activeElement !== nameInput) nameInput.value = result.name;
      if (result.valid) resolve(spec, mine);
      else {
        workspacesSummary.textContent = "Fix the spec to see its workspaces.";
        fill(workspacesBody);
      }
    } catch (error) {
      if (mine === generation) summary.textContent = error.message;
    }
  }, 300);
  const changed = () => {
    drawGutter();
    runButton.disabled = true;
    validate();
  };
  editor.addEventListener("input", changed);
  nameInput.addEventListener("input", () => {
    if (/^[A-Za-z0-9_.-]+$/.test(nameInput.value)) {
      editor.value = withName(editor.value, nameInput.value);
      changed();
    }
  });

  const useTemplate = (template) => {
    editor.value = template.spec;
    nameInput.value = (template.spec.match(/^name:\s*(\S+)/m) || [])[1] || template.name;
    for (const button of templateList.querySelectorAll("button[aria-pressed]")) button.setAttribute("aria-pressed", String(button.dataset.template === template.name));
    changed();
  };
  const templateList = h(
    "ul",
    { class: "templates" },
    templates.map((template) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "template", "aria-pressed": "false", dataset: { template: template.name }, onclick: () => useTemplate(template) },
          h("strong", {}, template.name),
          template.builtIn ? null : h("span", { class: "badge" }, "custom"),
          h("span", { class: "muted small" }, template.description),
        ),
      ),
    ),
  );

  const form = h(
    "form",
    {
      class: "create",
      onsubmit: async (event) => {
        event.preventDefault();
        runButton.disabled = true;
        try {
          const created = await post("/api/v1/batch-specs", { spec: editor.value, namespace: namespaceSelect.value });
          toast(`Running ${created.name}.`);
          navigate(`/batch-specs/${encodeURIComponent(created.id)}`);
        } catch (error) {
          toast(error.message, "error");
          runButton.disabled = false;
        }
      },
    },
    h("div", { class: "two-columns narrow-right" }, field("Name", nameInput, "Letters, digits, - _ and . (sets `name:` in the spec)"), field("Namespace", namespaceSelect)),
    h("label", { for: "spec-editor" }, "Batch spec"),
    h("div", { class: "editor" }, gutter, editor),
    summary,
    diagnosticsList,
    h("div", { class: "form-actions" }, runButton),
  );
  editor.id = "spec-editor";
  fill(
    main,
    h("h1", {}, "Create a batch change"),
    h("section", { "aria-labelledby": "templates-heading" }, h("h2", { id: "templates-heading" }, "Start from a template"), templateList),
    form,
    h(
      "section",
      { "aria-labelledby": "workspaces-heading" },
      h("h2", { id: "workspaces-heading" }, "Workspaces"),
      workspacesSummary,
      h(
        "table",
        { class: "data", id: "workspaces" },
        h("thead", {}, h("tr", {}, ["Repository", "Path", "Branch", "Notes", h("span", { class: "visually-hidden" }, "Actions")].map((text) => h("th", { scope: "col" }, text)))),
        workspacesBody,
      ),
    ),
  );
  const first = templates.find((template) => template.name === params.template) || templates[0];
  if (first) useTemplate(first);
  else drawGutter();
  return () => {
    stopped = true;
  };
}
