// Unit tests of the client's pure helpers (no browser needed): `node --test client.test.mjs`,
// run by crates/flotilla/tests/e2e_web.rs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { excludeRepository, withName } from "../assets/js/pages/create.js";
import { displayState } from "../assets/js/pages/batch_change.js";
import { duration, plural } from "../assets/js/format.js";
import { query } from "../assets/js/api.js";

test("excluding a repository narrows every repositoriesMatchingQuery", () => {
  const spec = "name: x\non:\n  - repositoriesMatchingQuery: file:README.md\n  - repositoriesMatchingQuery: \"lang:go fmt\"\nsteps: []\n";
  const edited = excludeRepository(spec, "github.com/a/b.c");
  assert.equal(
    edited,
    "name: x\non:\n  - repositoriesMatchingQuery: file:README.md -repo:^github\\.com/a/b\\.c$\n  - repositoriesMatchingQuery: \"lang:go fmt -repo:^github\\\\.com/a/b\\\\.c$\"\nsteps: []\n",
  );
});

test("excluding a listed repository removes its entry and the lines that belong to it", () => {
  const spec = "on:\n  - repository: local/a\n    branch: main\n  - repository: local/b\nsteps: []\n";
  assert.equal(excludeRepository(spec, "local/a"), "on:\n  - repository: local/b\nsteps: []\n");
  assert.equal(excludeRepository(spec, "local/b"), "on:\n  - repository: local/a\n    branch: main\nsteps: []\n");
});

test("a spec whose repositories cannot be edited is left to the user", () => {
  assert.equal(excludeRepository("on:\n  - repositoriesMatchingQuery: >\n      foo\n", "x"), null);
});

test("the name field sets the spec's name", () => {
  assert.equal(withName("name: old\non: []\n", "new"), "name: new\non: []\n");
  assert.equal(withName("on: []\n", "new"), "name: new\non: []\n");
});

test("changesets show the state a person sees, in the statistics' precedence", () => {
  const base = { archived: false, reconcilerState: "completed", publicationState: "PUBLISHED", externalState: "OPEN" };
  assert.equal(displayState(base), "open");
  assert.equal(displayState({ ...base, archived: true, reconcilerState: "failed" }), "archived");
  assert.equal(displayState({ ...base, reconcilerState: "failed" }), "failed");
  assert.equal(displayState({ ...base, reconcilerState: "queued" }), "processing");
  assert.equal(displayState({ ...base, publicationState: "UNPUBLISHED", externalState: null }), "unpublished");
  assert.equal(displayState({ ...base, externalState: "MERGED" }), "merged");
});

test("formatting", () => {
  assert.equal(duration(950), "950 ms");
  assert.equal(duration(6040), "6.0 s");
  assert.equal(duration(125_000), "2 min 5 s");
  assert.equal(plural(1, "workspace"), "1 workspace");
  assert.equal(plural(2, "repository", "repositories"), "2 repositories");
  assert.equal(query({ a: 1, b: "", c: null, d: "x y" }), "?a=1&d=x+y");
});
