// One batch change: its description, statistics, burndown chart, and every changeset with all
// its states, with filters, search and bulk operations on a selection.

import { enc, get, post, query } from "../api.js";
import { badge, field, fill, h, link } from "../dom.js";
import { burndownChart } from "../burndown.js";
import { dateTime, plural } from "../format.js";

/** The one state a person sees, with the precedence of the statistics. */
export function displayState(changeset) {
  if (changeset.archived) return "archived";
  if (changeset.reconcilerState === "failed") return "failed";
  if (changeset.reconcilerState === "scheduled") return "scheduled";
  if (changeset.reconcilerState === "queued" || changeset.reconcilerState === "processing") return "processing";
  if (changeset.publicationState === "UNPUBLISHED") return "unpublished";
  return (changeset.externalState || "open").toLowerCase();
}

const ACTIONS = [
  ["publish", "Publish"],
  ["publish-draft", "Publish as draft"],
  ["close", "Close"],
  ["comment", "Comment"],
  ["merge", "Merge"],
  ["retry", "Retry"],
  ["detach", "Detach"],
];

export async function render(main, params, { toast, navigate }) {
  const namespaceQuery = query({ namespace: params.namespace });
  const base = `/api/v1/batch-changes/${enc(params.name)}`;
  const [batchChange, statistics, changesets] = await Promise.all([
    get(`${base}${namespaceQuery}`),
    get(`${base}/statistics${namespaceQuery}`),
    get(`${base}/changesets${namespaceQuery}`),
  ]);
  const selected = new Set();
  const stateFilter = h("select", { name: "state" }, h("option", { value: "" }, "All states"));
  const states = [...new Set(changesets.map(displayState))].sort();
  for (const state of states) stateFilter.append(h("option", { value: state, selected: params.state === state }, state));
  const search = h("input", { type: "search", name: "search", placeholder: "Repository or title", value: params.q || "" });
  const tbody = h("tbody");
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select every changeset shown" });
  const selectionCount = h("span", { class: "muted", "aria-live": "polite" });
  const actionSelect = h("select", { name: "action" }, ACTIONS.map(([value, text]) => h("option", { value }, text)));
  const commentBody = h("textarea", { name: "comment", rows: 2, placeholder: "Comment text" });
  const commentField = field("Comment", commentBody);
  commentField.hidden = true;
  actionSelect.addEventListener("change", () => (commentField.hidden = actionSelect.value !== "comment"));
  const runButton = h("button", { type: "submit", class: "primary", disabled: true }, "Apply to selection");

  const shown = () => {
    const wanted = stateFilter.value;
    const text = search.value.trim().toLowerCase();
    return changesets.filter(
      (changeset) =>
        (!wanted || displayState(changeset) === wanted) &&
        (!text || changeset.repository.toLowerCase().includes(text) || changeset.title.toLowerCase().includes(text) || changeset.headRef.toLowerCase().includes(text)),
    );
  };
  const updateSelection = () => {
    selectionCount.textContent = `${plural(selected.size, "changeset")} selected`;
    runButton.disabled = selected.size === 0;
    const visible = shown();
    selectAll.checked = visible.length > 0 && visible.every((changeset) => selected.has(changeset.id));
  };
  // The table shows a page at a time (a batch change may have thousands of changesets);
  // filters, search and "select every changeset shown" work on every page.
  const PAGE_SIZE = 100;
  let page = 0;
  const pageInfo = h("span", { class: "muted", "aria-live": "polite" });
  const previousButton = h("button", { type: "button", onclick: () => { page -= 1; draw(); } }, "Previous page");
  const nextButton = h("button", { type: "button", onclick: () => { page += 1; draw(); } }, "Next page");
  const draw = () => {
    const matching = shown();
    const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE));
    page = Math.min(Math.max(0, page), pages - 1);
    const visible = matching.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    pageInfo.textContent = matching.length > PAGE_SIZE ? `Page ${page + 1} of ${pages} (${matching.length} changesets)` : "";
    previousButton.hidden = nextButton.hidden = pages === 1;
    previousButton.disabled = page === 0;
    nextButton.disabled = page >= pages - 1;
    fill(
      tbody,
      visible.length
        ? visible.map((changeset) => {
            const box = h("input", { type: "checkbox", checked: selected.has(changeset.id), "aria-label": `Select ${changeset.repository}` });
            box.addEventListener("change", () => {
              if (box.checked) selected.add(changeset.id);
              else selected.delete(changeset.id);
              updateSelection();
            });
            return h(
              "tr",
              { dataset: { repository: changeset.repository } },
              h("td", {}, box),
              h("th", { scope: "row" }, changeset.repository, h("div", { class: "muted small" }, changeset.headRef)),
              h("td", {}, /^https?:\/\//.test(changeset.externalUrl || "") ? h("a", { href: changeset.externalUrl, rel: "noopener" }, changeset.title) : changeset.title, changeset.failureMessage ? h("div", { class: "error small" }, changeset.failureMessage) : null),
              h("td", {}, badge(displayState(changeset))),
              h("td", {}, badge(changeset.publicationState)),
              h("td", {}, badge(changeset.reconcilerState)),
              h("td", {}, changeset.externalState ? badge(changeset.externalState) : "—"),
              h("td", {}, changeset.reviewState ? badge(changeset.reviewState) : "—"),
              h("td", {}, changeset.checkState ? badge(changeset.checkState) : "—"),
            );
          })
        : h("tr", {}, h("td", { colspan: 9, class: "empty" }, changesets.length ? "No changeset matches the filters." : "No changesets yet.")),
    );
    updateSelection();
  };
  selectAll.addEventListener("change", () => {
    for (const changeset of shown()) {
      if (selectAll.checked) selected.add(changeset.id);
      else selected.delete(changeset.id);
    }
    draw();
  });
  const redraw = () => {
    page = 0;
    draw();
  };
  stateFilter.addEventListener("change", redraw);
  search.addEventListener("input", redraw);

  const bulkForm = h(
    "form",
    {
      class: "bulk",
      "aria-label": "Bulk operation on the selected changesets",
      onsubmit: async (event) => {
        event.preventDefault();
        const action = actionSelect.value;
        const body = { action: action === "publish-draft" ? "publish" : action, changesetIds: [...selected], draft: action === "publish-draft" };
        if (action === "comment") body.body = commentBody.value;
        runButton.disabled = true;
        try {
          const outcomes = await post(`${base}/changesets/bulk${namespaceQuery}`, body);
          const done = outcomes.filter((outcome) => outcome.outcome === "done").length;
          const skipped = outcomes.filter((outcome) => outcome.outcome === "skipped");
          toast(`${ACTIONS.find(([value]) => value === action)[1]}: ${done} done${skipped.length ? `, ${skipped.length} skipped (${skipped[0].message})` : ""}.`);
          navigate(location.pathname + location.search, { replace: true });
        } catch (error) {
          toast(error.message, "error");
          runButton.disabled = false;
        }
      },
    },
    field("Action", actionSelect),
    commentField,
    runButton,
    selectionCount,
  );

  const counts = statistics.changesets;
  const stat = (label, value) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value));
  const closeButton = h(
    "button",
    {
      type: "button",
      class: "danger",
      disabled: batchChange.state === "closed",
      onclick: async () => {
        if (!confirm(`Close ${batchChange.name} and close its open changesets?`)) return;
        try {
          await post(`${base}/close${namespaceQuery}`, { closeChangesets: true });
          toast(`${batchChange.name} is closed.`);
          navigate(location.pathname + location.search, { replace: true });
        } catch (error) {
          toast(error.message, "error");
        }
      },
    },
    "Close batch change",
  );
  fill(
    main,
    h("p", { class: "breadcrumbs" }, link(`/?namespace=${enc(batchChange.namespace)}`, batchChange.namespace), " / "),
    h("div", { class: "page-header" }, h("h1", {}, batchChange.name, " ", badge(batchChange.state)), h("div", { class: "actions" }, batchChange.batchSpecId ? link(`/batch-specs/${enc(batchChange.batchSpecId)}`, h("span", { class: "button" }, "Latest run")) : null, link("/batch-changes/new", h("span", { class: "button" }, "New run")), closeButton)),
    h("p", { class: "description" }, batchChange.description || h("span", { class: "muted" }, "No description.")),
    h("p", { class: "muted small" }, `Created ${dateTime(batchChange.createdAtMs)} · last applied ${dateTime(batchChange.lastAppliedAtMs)}`),
    h(
      "section",
      { "aria-labelledby": "statistics-heading" },
      h("h2", { id: "statistics-heading" }, "Statistics"),
      h(
        "dl",
        { class: "stats" },
        stat("Total", counts.total),
        stat("Open", counts.open),
        stat("Draft", counts.draft),
        stat("Merged", counts.merged),
        stat("Closed", counts.closed),
        stat("Unpublished", counts.unpublished),
        stat("Processing", counts.processing + counts.scheduled + counts.retrying),
        stat("Failed", counts.failed),
        stat("Archived", counts.archived),
        stat("Complete", `${counts.percentComplete}%`),
      ),
      burndownChart(statistics.burndown),
    ),
    h(
      "section",
      { "aria-labelledby": "changesets-heading" },
      h("h2", { id: "changesets-heading" }, `Changesets (${changesets.length})`),
      h("div", { class: "filters", role: "group", "aria-label": "Filter changesets" }, field("State", stateFilter), field("Search", search)),
      bulkForm,
      h(
        "table",
        { class: "data", id: "changesets" },
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, selectAll), ["Repository", "Title", "State", "Publication", "Reconciler", "On the code host", "Review", "Checks"].map((text) => h("th", { scope: "col" }, text))),
        ),
        tbody,
      ),
      h("nav", { class: "pager", "aria-label": "Changeset pages" }, previousButton, pageInfo, nextButton),
    ),
  );
  draw();
}
