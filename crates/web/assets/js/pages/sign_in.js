// Sign-in with a username and password, or with an access token. Either way the server sets
// an HttpOnly session cookie; the page never stores a token.

import { api, get } from "../api.js";
import { field, fill, h } from "../dom.js";

export async function render(main, params, { navigate, signedIn }) {
  const next = params.next && params.next.startsWith("/") && !params.next.startsWith("//") ? params.next : "/";
  const message = h("p", { class: "error", role: "alert" });
  const done = async () => {
    signedIn(await get("/api/v1/me"));
    navigate(next, { replace: true });
  };
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const passwordForm = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "password-heading",
      onsubmit: async (event) => {
        event.preventDefault();
        fill(message);
        try {
          await api("POST", "/api/v1/sessions", { username: username.value, password: password.value });
          await done();
        } catch (error) {
          fill(message, error.message);
        }
      },
    },
    h("h2", { id: "password-heading" }, "Username and password"),
    field("Username", username),
    field("Password", password),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  const token = h("input", { name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const tokenForm = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "token-heading",
      onsubmit: async (event) => {
        event.preventDefault();
        fill(message);
        try {
          await api("POST", "/api/v1/sessions/token", {}, { Authorization: `token ${token.value.trim()}` });
          token.value = "";
          await done();
        } catch (error) {
          fill(message, error.message);
        }
      },
    },
    h("h2", { id: "token-heading" }, "Access token"),
    field("Token", token, "The admin token that flotilla up printed, or one from flotilla tokens create. It becomes a 12-hour browser session; the token itself is not kept."),
    h("button", { type: "submit", class: "primary" }, "Sign in with token"),
  );
  fill(main, h("h1", {}, "Sign in to Flotilla"), message, h("div", { class: "two-columns" }, passwordForm, tokenForm));
  username.focus();
}
