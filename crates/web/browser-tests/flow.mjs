// The web interface end to end in headless Chromium: sign in with a token, create a batch
// change from a template (fixing a validation error and excluding a workspace on the way),
// run it, watch a log line arrive live, preview, apply with publication choices, see the
// changesets, bulk-close them, and look at the admin pages. Takes a screenshot of each page.
//
// Usage: node flow.mjs URL TOKEN SCREENSHOT_DIR
// Run by crates/flotilla/tests/e2e_web.rs against a real server, executor and git host.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, token, screenshots] = process.argv.slice(2);
// A second user, who is not a site admin (created by the Rust test).
const viewerPassword = process.env.VIEWER_PASSWORD || "";
if (!url || !token || !screenshots) {
  console.error("usage: node flow.mjs URL TOKEN SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(screenshots, { recursive: true });
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
page.setDefaultTimeout(30_000);
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  if (message.type() === "error" && !/status of 40[139]/.test(message.text())) problems.push(`console error: ${message.text()}`);
});
page.on("request", (request) => {
  if (!request.url().startsWith(url) && !request.url().startsWith("data:")) problems.push(`request outside the server: ${request.url()}`);
});

const step = (text) => console.log(`• ${text}`);
const shot = async (name) => {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: false });
  step(`screenshot ${name}.png`);
};
async function expectText(locator, text, timeout = 30_000) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout });
}

try {
  step("sign in with a token");
  await page.goto(url);
  await page.waitForURL(/\/sign-in/);
  await shot("sign-in");
  await page.getByLabel("Token", { exact: true }).fill(token);
  await page.getByRole("button", { name: "Sign in with token" }).click();
  await page.getByRole("heading", { name: "Batch changes", level: 1 }).waitFor();

  step("create from a template");
  await page.getByRole("link", { name: "Create", exact: true }).click();
  await page.getByRole("heading", { name: "Create a batch change" }).waitFor();
  await page.getByRole("button", { name: /hello-world/ }).click();
  const editor = page.getByLabel("Batch spec", { exact: true });
  await expectText(page.locator("#diagnostics-summary"), "The spec is valid");
  // A mistake first: the problem shows at its line.
  const original = await editor.inputValue();
  await editor.fill(original.replace("steps:\n", "steps: 3\n"));
  await page.locator(".gutter-line.error").first().waitFor();
  const problem = await page.locator(".diagnostics li").first().textContent();
  if (!/Line \d+, column \d+/.test(problem)) throw new Error(`the problem does not say its line: ${problem}`);
  await shot("create-with-a-problem");
  // Then the real edit: a step that logs a line, waits, then changes the README.
  const spec = original
    .replace(/^name: .*$/m, "name: web-hello")
    .replace(/run: .*$/m, 'run: echo "live line from ${{ repository.name }}"; sleep 10; echo "Hello from ${{ repository.name }}" >> README.md');
  await editor.fill(spec);
  await expectText(page.locator("#diagnostics-summary"), "The spec is valid");
  await expectText(page.locator("#workspaces tbody"), "local/gamma");
  step("exclude one workspace");
  await page.getByRole("button", { name: "Exclude local/gamma" }).click();
  await page.waitForFunction(() => !document.querySelector("#workspaces tbody")?.textContent.includes("local/gamma") && document.querySelectorAll("#workspaces tbody tr").length === 2);
  if (!(await editor.inputValue()).includes("-repo:^local/gamma$")) throw new Error("excluding did not edit the spec");
  await expectText(page.locator("#diagnostics-summary"), "The spec is valid");
  await shot("create");
  await page.getByRole("button", { name: "Run batch spec" }).click();

  step("watch a log line arrive live");
  await page.waitForURL(/\/batch-specs\/[^/]+$/);
  await expectText(page.locator("#workspaces tbody"), "local/alpha");
  await page.getByRole("button", { name: "local/alpha" }).click();
  const stepSection = page.locator('#workspace-panel [data-step="0"]');
  await stepSection.waitFor();
  // The line must show while the step still runs: it came over the event stream.
  await page.waitForFunction(
    () => {
      const section = document.querySelector('#workspace-panel [data-step="0"]');
      return section && section.classList.contains("step-running") && section.querySelector("pre.output").textContent.includes("live line from local/alpha");
    },
    null,
    { timeout: 30_000 },
  );
  await shot("execution-live-log");
  await page.waitForFunction(() => document.querySelector('#workspace-panel [data-step="0"]')?.classList.contains("step-completed"), null, { timeout: 60_000 });
  await expectText(page.locator("#workspace-panel .exit-code"), "0");
  await page.locator("#workspace-panel details summary", { hasText: "Diff after this step" }).click();
  await shot("execution");

  step("preview and apply");
  const preview = page.getByRole("link", { name: "Preview and apply" });
  await page.waitForFunction(() => !document.querySelector('a[href$="/preview"]')?.hidden, null, { timeout: 60_000 });
  await preview.click();
  await page.getByRole("heading", { name: "Preview: web-hello" }).waitFor();
  await expectText(page.locator(".planned"), "local/alpha");
  if ((await page.locator(".planned").count()) !== 2) throw new Error("the preview should list 2 changesets");
  await page.locator(".planned details summary").first().click();
  await page.getByLabel("Publication of every changeset", { exact: true }).selectOption("publish");
  await shot("preview");
  await page.getByRole("button", { name: "Apply", exact: true }).click();

  step("see the changesets");
  await page.waitForURL(/\/batch-changes\/admin\/web-hello/);
  await page.getByRole("heading", { name: /web-hello/, level: 1 }).waitFor();
  for (let attempt = 0; ; attempt++) {
    const states = await page.locator("#changesets tbody tr td:nth-child(6)").allTextContents();
    if (states.length === 2 && states.every((state) => state === "completed")) break;
    if (attempt > 60) throw new Error(`the changesets were not reconciled: ${states}`);
    await page.waitForTimeout(1000);
    await page.reload();
    await page.getByRole("heading", { name: /web-hello/, level: 1 }).waitFor();
  }
  await shot("batch-change");

  step("bulk-close them");
  await page.getByLabel("Select every changeset shown", { exact: true }).check();
  await expectText(page.locator(".bulk"), "2 changesets selected");
  await page.getByLabel("Action", { exact: true }).selectOption("close");
  await page.getByRole("button", { name: "Apply to selection" }).click();
  await expectText(page.locator("#toast"), "Close: 2 done");
  for (let attempt = 0; ; attempt++) {
    await page.getByRole("heading", { name: /web-hello/, level: 1 }).waitFor();
    const states = await page.locator("#changesets tbody tr td:nth-child(4)").allTextContents();
    if (states.length === 2 && states.every((state) => state === "closed")) break;
    if (attempt > 60) throw new Error(`the changesets were not closed: ${states}`);
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await shot("batch-change-closed");

  step("the list and the admin pages");
  await page.getByRole("link", { name: "Batch changes", exact: true }).click();
  await expectText(page.locator("table.data"), "web-hello");
  await shot("batch-changes");
  await page.getByRole("link", { name: "Admin", exact: true }).click();
  await expectText(page.locator("table.data").last(), "local/alpha");
  await shot("admin-code-hosts");
  await page.getByRole("link", { name: "Executors" }).click();
  await expectText(page.locator("table.data"), "alive");
  await expectText(page.locator("table.data"), "pool=web");
  await shot("admin-executors");
  await page.getByRole("link", { name: "Secrets" }).click();
  await page.getByLabel("Name", { exact: true }).fill("WEB_SECRET");
  await page.getByLabel("Value", { exact: true }).fill("s3cr3t-value-for-the-web-test");
  await page.getByRole("button", { name: "Save secret" }).click();
  await expectText(page.locator("table.data"), "WEB_SECRET");
  if ((await page.content()).includes("s3cr3t-value-for-the-web-test")) throw new Error("a secret's value was shown back");
  await shot("admin-secrets");

  step("an admin adds a template, and it is offered on the create page");
  await page.getByRole("link", { name: "Templates" }).click();
  await page.getByLabel("Name", { exact: true }).fill("team-readme");
  await page.getByLabel("Batch spec", { exact: true }).fill(spec.replace("name: web-hello", "name: team-readme"));
  await page.getByRole("button", { name: "Add template" }).click();
  await expectText(page.locator("table.data"), "added by an admin");
  await page.getByRole("link", { name: "Create", exact: true }).click();
  await page.getByRole("button", { name: /team-readme/ }).click();
  await expectText(page.locator("#diagnostics-summary"), "The spec is valid");
  if (!(await page.getByLabel("Batch spec", { exact: true }).inputValue()).includes("name: team-readme")) throw new Error("the added template did not load");

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/sign-in/);

  step("a user who is not an admin reads the batch change but cannot change it");
  await page.getByLabel("Username", { exact: true }).fill("viewer");
  await page.getByLabel("Password", { exact: true }).fill(viewerPassword);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: "Batch changes", level: 1 }).waitFor();
  await page.goto(`${url}/batch-changes/admin/web-hello`);
  await page.getByRole("heading", { name: /web-hello/, level: 1 }).waitFor();
  await page.getByLabel("Select every changeset shown", { exact: true }).check();
  await page.getByLabel("Action", { exact: true }).selectOption("retry");
  await page.getByRole("button", { name: "Apply to selection" }).click();
  await page.locator("#toast .toast-error").waitFor();
  await page.getByRole("link", { name: "Settings", exact: true }).click();
  await page.getByRole("link", { name: "Executors" }).click();
  await expectText(page.locator("main"), "Only site admins see the executors.");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/sign-in/);
  if (problems.length) throw new Error(problems.join("\n"));
  console.log("BROWSER FLOW PASSED");
} catch (error) {
  await page.screenshot({ path: join(screenshots, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`BROWSER FLOW FAILED: ${error.stack || error}`);
  if (problems.length) console.error(problems.join("\n"));
  await browser.close();
  process.exit(1);
}
await browser.close();
