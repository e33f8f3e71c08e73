// Preview and apply: every changeset with the operations apply will perform and its diff,
// and a publication choice for each changeset whose spec leaves `published` unset. Applying
// creates or updates the batch change and records the choices in the same request.

import { enc, get, post, query } from "../api.js";
import { badge, diffView, field, fill, h, link } from "../dom.js";
import { plural } from "../format.js";

const CHOICES = [
  ["", "Leave unpublished"],
  ["draft", "Publish as draft"],
  ["publish", "Publish"],
];

export async function render(main, params, { navigate, toast }) {
  const id = params.id;
  const base = `/api/v1/batch-specs/${enc(id)}`;
  const [status, plan, specPage] = await Promise.all([get(base), get(`${base}/apply-preview`), get(`${base}/changeset-specs${query({ limit: 1000 })}`)]);
  const specs = new Map(specPage.changesetSpecs.map((spec) => [`${spec.repository}\n${spec.headRef}`, spec]));
  const choices = new Map();
  const choosable = [];

  const rows = plan.changesets.map((planned) => {
    const key = `${planned.repository}\n${planned.headRef}`;
    const spec = specs.get(key);
    const unset = spec && (spec.published === null || spec.published === undefined) && planned.action !== "retire";
    let choice = null;
    if (unset) {
      choice = h("select", { "aria-label": `Publication of ${planned.repository}`, dataset: { repository: planned.repository } }, CHOICES.map(([value, text]) => h("option", { value }, text)));
      choice.addEventListener("change", () => choices.set(key, choice.value));
      choosable.push(choice);
    }
    return h(
      "article",
      { class: "planned", dataset: { repository: planned.repository } },
      h(
        "header",
        {},
        h("h3", {}, planned.repository),
        h("span", { class: "muted" }, planned.headRef),
        " ",
        badge(planned.action),
        " ",
        planned.operations.length ? planned.operations.map((operation) => badge(operation, operation)) : h("span", { class: "muted" }, "no operation"),
      ),
      spec ? h("p", {}, h("strong", {}, spec.title)) : null,
      h(
        "p",
        { class: "publication" },
        unset ? field("Publication", choice) : spec ? h("span", { class: "muted" }, `published: ${JSON.stringify(spec.published)} (set by the spec)`) : null,
      ),
      spec ? h("details", {}, h("summary", {}, "Diff"), diffView(spec.diff)) : null,
    );
  });

  const setAll = h("select", { "aria-label": "Publication of every changeset" }, h("option", { value: "-" }, "Choose for all…"), CHOICES.map(([value, text]) => h("option", { value }, text)));
  setAll.addEventListener("change", () => {
    if (setAll.value === "-") return;
    for (const select of choosable) {
      select.value = setAll.value;
      select.dispatchEvent(new Event("change"));
    }
  });
  const applyButton = h("button", { type: "button", class: "primary", disabled: !["completed", "failed"].includes(status.state) }, "Apply");
  applyButton.addEventListener("click", async () => {
    applyButton.disabled = true;
    try {
      // The choices travel with the apply, so the first reconcile already publishes them.
      const publicationStates = [...choices.entries()]
        .filter(([, value]) => value)
        .map(([key, value]) => {
          const [repository, headRef] = key.split("\n");
          return { repository, headRef, state: value === "draft" ? "DRAFT" : "PUBLISHED" };
        });
      await post(`${base}/apply`, { publicationStates });
      toast(`Applied ${plan.batchChange}.`);
      navigate(`/batch-changes/${enc(status.namespace)}/${enc(plan.batchChange)}`);
    } catch (error) {
      toast(error.message, "error");
      applyButton.disabled = false;
    }
  });
  const byAction = (action) => plan.changesets.filter((planned) => planned.action === action).length;
  fill(
    main,
    h("p", { class: "breadcrumbs" }, link(`/batch-specs/${enc(id)}`, `Execution of ${status.name}`), " / "),
    h("div", { class: "page-header" }, h("h1", {}, `Preview: ${plan.batchChange}`), h("div", { class: "actions" }, choosable.length ? setAll : null, applyButton)),
    h("p", {}, `${plural(plan.changesets.length, "changeset")}: ${byAction("create")} to create, ${byAction("continue")} to update, ${byAction("retire")} to close.`),
    ["completed", "failed"].includes(status.state) ? null : h("p", { class: "error", role: "alert" }, `The batch spec is still ${status.state}; apply once its workspaces finish.`),
    specPage.next ? h("p", { class: "muted" }, "Diffs are shown for the first 1,000 changesets.") : null,
    h("section", { class: "preview-list", "aria-label": "Changesets" }, rows.length ? rows : h("p", { class: "empty" }, "This spec produces no changesets.")),
  );
}
