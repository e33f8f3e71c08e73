// A batch spec's execution: counts by state, one page of workspaces at a time (server-side
// pagination and filtering, so 45,000 workspaces open as fast as 5), and a workspace panel
// with every step whose output streams live over server-sent events. Cancel, retry one
// workspace, retry every failed one; preview once it finished.

import { enc, get, post, query } from "../api.js";
import { badge, diffView, field, fill, h, link } from "../dom.js";
import { dateTime, duration, plural, since } from "../format.js";

const PAGE_SIZE = 50;
const STATES = ["queued", "processing", "completed", "failed", "canceled"];
const FINAL = new Set(["completed", "failed", "canceled"]);

export async function render(main, params, { navigate, toast }) {
  const id = params.id;
  const base = `/api/v1/batch-specs/${enc(id)}`;
  let status = await get(base);
  let stream = null;
  let timer = null;
  let stopped = false;
  let openWorkspace = params.workspace ? Number(params.workspace) : null;
  const cursors = [null];
  let page = 0;
  let next = null;

  const heading = h("h1", {});
  const counts = h("dl", { class: "stats" });
  const problems = h("div");
  const stateFilter = h("select", { name: "state" }, h("option", { value: "" }, "All states"), STATES.map((state) => h("option", { value: state, selected: params.state === state }, state)));
  const tbody = h("tbody");
  const pageInfo = h("span", { class: "muted", "aria-live": "polite" });
  const previousButton = h("button", { type: "button", disabled: true }, "Previous page");
  const nextButton = h("button", { type: "button", disabled: true }, "Next page");
  const panel = h("section", { class: "panel", id: "workspace-panel", "aria-label": "Workspace", tabindex: "-1" }, h("p", { class: "muted" }, "Select a workspace to see its steps."));
  const cancelButton = h("button", { type: "button", class: "danger" }, "Cancel");
  const retryButton = h("button", { type: "button" }, "Retry all failed");
  const previewLink = link(`/batch-specs/${enc(id)}/preview`, h("span", { class: "button primary" }, "Preview and apply"));

  const drawStatus = () => {
    fill(heading, status.name, " ", badge(status.state));
    const jobs = status.jobs;
    fill(
      counts,
      [
        ["Workspaces", status.workspaces],
        ["Queued", jobs.queued],
        ["Processing", jobs.processing + jobs.canceling],
        ["Completed", jobs.completed],
        ["Failed", jobs.failed],
        ["Canceled", jobs.canceled],
        ["Changeset specs", status.changesetSpecs],
      ].map(([label, value]) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value))),
    );
    fill(
      problems,
      status.resolutionFailure ? h("p", { class: "error", role: "alert" }, `Resolving the workspaces failed: ${status.resolutionFailure}`) : null,
      (status.problems || []).map((problem) => h("p", { class: "error", role: "alert" }, problem)),
    );
    const finished = FINAL.has(status.state);
    cancelButton.disabled = finished || status.state === "canceling";
    retryButton.disabled = jobs.failed === 0 || !finished;
    previewLink.hidden = !(status.state === "completed" || status.state === "failed");
  };

  const loadPage = async () => {
    const answer = await get(`${base}/workspaces${query({ state: stateFilter.value, after: cursors[page], limit: PAGE_SIZE })}`);
    if (stopped) return;
    next = answer.next;
    fill(
      tbody,
      answer.workspaces.length
        ? answer.workspaces.map((workspace) =>
            h(
              "tr",
              { class: workspace.id === openWorkspace ? "selected" : "", dataset: { repository: workspace.repository } },
              h("th", { scope: "row" }, h("button", { type: "button", class: "link-button", "aria-controls": "workspace-panel", onclick: () => showWorkspace(workspace.id, true) }, workspace.repository)),
              h("td", {}, workspace.path || "/"),
              h("td", {}, badge(workspace.state)),
              h("td", {}, workspace.executor || "—"),
              h("td", {}, workspace.startedAtMs ? since(workspace.startedAtMs, workspace.finishedAtMs) : "—"),
              h("td", { class: "error small" }, workspace.failureMessage || ""),
            ),
          )
        : h("tr", {}, h("td", { colspan: 6, class: "empty" }, status.state === "pending" ? "Resolving the workspaces…" : "No workspace in this state.")),
    );
    const first = page * PAGE_SIZE + 1;
    pageInfo.textContent = answer.workspaces.length ? `Workspaces ${first}–${first + answer.workspaces.length - 1} of ${status.workspaces}` : "";
    previousButton.disabled = page === 0;
    nextButton.disabled = next === null || next === undefined;
  };
  previousButton.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    loadPage();
  });
  nextButton.addEventListener("click", () => {
    cursors[page + 1] = next;
    page += 1;
    loadPage();
  });
  stateFilter.addEventListener("change", () => {
    cursors.length = 1;
    page = 0;
    history.replaceState(null, "", location.pathname + query({ state: stateFilter.value, workspace: openWorkspace }));
    loadPage();
  });

  const closeStream = () => {
    if (stream) stream.close();
    stream = null;
  };

  const stepView = (step) => {
    const output = h("pre", { class: "output", tabindex: "0", "aria-label": `Output of step ${step.index + 1}` }, step.output || "");
    return h(
      "section",
      { class: `step step-${step.state}`, dataset: { step: String(step.index) } },
      h("h3", {}, `Step ${step.index + 1} `, h("span", { class: "step-state" }, badge(step.state))),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Command"),
        h("dd", {}, h("code", { class: "command" }, step.run)),
        h("dt", {}, "Container"),
        h("dd", {}, h("code", {}, step.container)),
        step.condition ? [h("dt", {}, "If"), h("dd", {}, h("code", {}, step.condition))] : null,
        h("dt", {}, "Exit code"),
        h("dd", { class: "exit-code" }, step.exitCode ?? "—"),
        h("dt", {}, "Duration"),
        h("dd", { class: "duration" }, duration(step.durationMs)),
      ),
      h("h4", {}, "Output"),
      output,
      step.diff !== null && step.diff !== undefined ? h("details", {}, h("summary", {}, "Diff after this step"), diffView(step.diff)) : null,
      Object.keys(step.outputs || {}).length
        ? h("details", {}, h("summary", {}, "Outputs"), h("dl", { class: "facts" }, Object.entries(step.outputs).map(([name, value]) => [h("dt", {}, name), h("dd", {}, h("code", {}, typeof value === "string" ? value : JSON.stringify(value)))])))
        : null,
    );
  };

  const showWorkspace = async (workspaceId, focus) => {
    closeStream();
    openWorkspace = workspaceId;
    history.replaceState(null, "", location.pathname + query({ state: stateFilter.value, workspace: workspaceId }));
    for (const row of tbody.querySelectorAll("tr")) row.classList.remove("selected");
    const detail = await get(`/api/v1/workspaces/${workspaceId}`);
    if (stopped || openWorkspace !== workspaceId) return;
    const live = h("p", { class: "live muted", "aria-live": "polite" });
    const steps = h("div", { class: "steps" }, detail.steps.map(stepView));
    const setup = h("details", { class: "setup" }, h("summary", {}, "Setup"), detail.setup.map((entry) => h("div", {}, h("h4", {}, entry.key), h("pre", { class: "output" }, entry.output))));
    fill(
      panel,
      h("h2", {}, detail.repository, " ", badge(detail.state)),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Path"),
        h("dd", {}, detail.path || "/"),
        h("dt", {}, "Branch"),
        h("dd", {}, detail.branch, " ", h("code", { class: "muted" }, detail.commit.slice(0, 12))),
        h("dt", {}, "Executor"),
        h("dd", {}, detail.executor || "—"),
        h("dt", {}, "Started"),
        h("dd", {}, dateTime(detail.startedAtMs)),
        h("dt", {}, "Duration"),
        h("dd", {}, detail.startedAtMs ? since(detail.startedAtMs, detail.finishedAtMs) : "—"),
      ),
      detail.failureMessage ? h("p", { class: "error", role: "alert" }, detail.failureMessage) : null,
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            disabled: !FINAL.has(detail.state),
            onclick: async () => {
              try {
                await post(`${base}/retry`, { workspaces: [workspaceId], includeCompleted: true });
                toast(`Retrying ${detail.repository}.`);
                await refresh();
                showWorkspace(workspaceId, false);
              } catch (error) {
                toast(error.message, "error");
              }
            },
          },
          "Retry this workspace",
        ),
      ),
      live,
      setup,
      h("h3", { class: "visually-hidden" }, "Steps"),
      steps,
      detail.diff !== null && detail.diff !== undefined ? h("section", {}, h("h3", {}, "Workspace diff"), diffView(detail.diff)) : null,
    );
    if (focus) panel.focus();
    if (detail.jobId && !FINAL.has(detail.state)) {
      live.textContent = "Streaming the output live…";
      stream = new EventSource(`/api/v1/jobs/${detail.jobId}/logs/stream`);
      let counted = false;
      stream.addEventListener("log", (event) => {
        const entry = JSON.parse(event.data);
        // The job started: the counts above are stale until the next refresh.
        if (!counted && /^step\./.test(entry.key)) {
          counted = true;
          refresh().catch(() => {});
        }
        const match = /^step\.(\d+)$/.exec(entry.key);
        if (!match) return;
        const section = steps.querySelector(`[data-step="${match[1]}"]`);
        if (!section) return;
        const output = section.querySelector("pre.output");
        if (entry.offset === 0) output.textContent = entry.output;
        else output.textContent += entry.output;
        output.scrollTop = output.scrollHeight;
        const finished = entry.exitCode !== null && entry.exitCode !== undefined;
        const state = finished ? (entry.exitCode === 0 ? "completed" : "failed") : "running";
        section.className = `step step-${state}`;
        fill(section.querySelector(".step-state"), badge(state));
        section.querySelector(".exit-code").textContent = finished ? entry.exitCode : "—";
        section.querySelector(".duration").textContent = duration(entry.durationMs);
      });
      stream.addEventListener("end", () => {
        closeStream();
        live.textContent = "The job finished.";
        refresh().then(() => showWorkspace(workspaceId, false));
      });
    }
  };

  const refresh = async () => {
    status = await get(base);
    if (stopped) return;
    drawStatus();
    await loadPage();
  };
  const tick = async () => {
    if (stopped) return;
    try {
      if (!FINAL.has(status.state)) await refresh();
    } catch (error) {
      console.error(error);
    }
    if (!stopped) timer = setTimeout(tick, 3000);
  };

  cancelButton.addEventListener("click", async () => {
    if (!confirm("Cancel every workspace that has not finished?")) return;
    try {
      status = await post(`${base}/cancel`);
      drawStatus();
      await loadPage();
    } catch (error) {
      toast(error.message, "error");
    }
  });
  retryButton.addEventListener("click", async () => {
    try {
      status = await post(`${base}/retry`, {});
      toast("Retrying every failed workspace.");
      drawStatus();
      await loadPage();
      tick();
    } catch (error) {
      toast(error.message, "error");
    }
  });

  fill(
    main,
    h("p", { class: "breadcrumbs" }, link(`/?namespace=${enc(status.namespace)}`, status.namespace), " / batch spec ", h("code", {}, id)),
    h("div", { class: "page-header" }, heading, h("div", { class: "actions" }, cancelButton, retryButton, previewLink)),
    counts,
    problems,
    h(
      "div",
      { class: "execution" },
      h(
        "section",
        { "aria-labelledby": "workspaces-heading" },
        h("h2", { id: "workspaces-heading" }, "Workspaces"),
        h("div", { class: "filters", role: "group", "aria-label": "Filter workspaces" }, field("State", stateFilter)),
        h(
          "table",
          { class: "data", id: "workspaces" },
          h("thead", {}, h("tr", {}, ["Repository", "Path", "State", "Executor", "Duration", "Failure"].map((text) => h("th", { scope: "col" }, text)))),
          tbody,
        ),
        h("nav", { class: "pager", "aria-label": "Workspace pages" }, previousButton, pageInfo, nextButton),
      ),
      panel,
    ),
  );
  drawStatus();
  await loadPage();
  if (openWorkspace) showWorkspace(openWorkspace, false);
  timer = setTimeout(tick, 3000);
  return () => {
    stopped = true;
    clearTimeout(timer);
    closeStream();
  };
}
