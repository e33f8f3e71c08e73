// The batch changes of a namespace, with their state and changeset counts, and the
// namespace's recent runs (batch specs, applied or not).

import { enc, get, query } from "../api.js";
import { badge, field, fill, h, link } from "../dom.js";
import { dateTime } from "../format.js";

export async function render(main, params, { me, navigate }) {
  const namespace = params.namespace || me.username;
  const state = params.state || "open";
  const namespaceSelect = h(
    "select",
    { name: "namespace" },
    me.namespaces.map((item) => h("option", { value: item.name, selected: item.name === namespace }, item.kind === "org" ? `${item.name} (organization)` : item.name)),
  );
  if (!me.namespaces.some((item) => item.name === namespace)) namespaceSelect.append(h("option", { value: namespace, selected: true }, namespace));
  const stateSelect = h("select", { name: "state" }, ["open", "closed", "all"].map((value) => h("option", { value, selected: value === state }, value)));
  const change = () => navigate(`/${query({ namespace: namespaceSelect.value, state: stateSelect.value })}`);
  namespaceSelect.addEventListener("change", change);
  stateSelect.addEventListener("change", change);

  const [list, specs] = await Promise.all([
    get(`/api/v1/batch-changes${query({ namespace, state, limit: 100 })}`),
    get(`/api/v1/batch-specs${query({ namespace, limit: 10 })}`),
  ]);
  const rows = list.batchChanges.map((item) => {
    const counts = item.changesets;
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, link(`/batch-changes/${enc(item.namespace)}/${enc(item.name)}`, item.name), h("div", { class: "muted small" }, item.description)),
      h("td", {}, badge(item.state)),
      h("td", { class: "number" }, counts.total),
      h("td", { class: "number" }, counts.open + counts.draft),
      h("td", { class: "number" }, counts.merged),
      h("td", { class: "number" }, counts.closed),
      h("td", { class: "number" }, counts.unpublished + counts.scheduled + counts.processing),
      h("td", { class: "number" }, counts.failed),
      h("td", {}, h("progress", { max: 100, value: counts.percentComplete, "aria-label": `${counts.percentComplete}% complete` }), ` ${counts.percentComplete}%`),
      h("td", {}, dateTime(item.lastAppliedAtMs)),
    );
  });
  const table = rows.length
    ? h(
        "table",
        { class: "data" },
        h("caption", { class: "visually-hidden" }, `Batch changes in ${namespace}`),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Name", "State", "Changesets", "Open", "Merged", "Closed", "Not yet published", "Failed", "Progress", "Last applied"].map((text) => h("th", { scope: "col" }, text)),
          ),
        ),
        h("tbody", {}, rows),
      )
    : h("p", { class: "empty" }, `No ${state === "all" ? "" : state + " "}batch changes in ${namespace} yet. `, link("/batch-changes/new", "Create one from a template"), ".");
  const runs = specs.batchSpecs.length
    ? h(
        "ul",
        { class: "plain-list" },
        specs.batchSpecs.map((spec) =>
          h("li", {}, link(`/batch-specs/${enc(spec.id)}`, spec.name), " ", h("span", { class: "muted" }, dateTime(spec.createdAtMs)), " ", spec.applied ? badge("applied") : badge("draft", "not applied")),
        ),
      )
    : h("p", { class: "muted" }, "No runs yet.");
  fill(
    main,
    h("div", { class: "page-header" }, h("h1", {}, "Batch changes"), link("/batch-changes/new", h("span", { class: "button primary" }, "Create batch change"))),
    h("div", { class: "filters", role: "group", "aria-label": "Filters" }, field("Namespace", namespaceSelect), field("State", stateSelect)),
    table,
    h("section", { "aria-labelledby": "runs-heading" }, h("h2", { id: "runs-heading" }, "Recent runs"), runs),
  );
}
