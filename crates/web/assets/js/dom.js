// Small DOM helpers: build elements from data, never from HTML strings, so nothing a user or
// a repository wrote can become markup.

/** h("a", {href: "/x", class: "c", onclick: fn}, "text", child...) */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function clear(element) {
  while (element.firstChild) element.firstChild.remove();
  return element;
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  clear(element);
  return append(element, children);
}

/** An internal link handled by the client-side router. */
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

/** A labelled form control: returns [label, control]. */
export function field(labelText, control, hint) {
  const id = control.id || `field-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintElement = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintElement) control.setAttribute("aria-describedby", hintElement.id);
  return h("div", { class: "field" }, h("label", { for: id }, labelText), control, hintElement);
}

/** A badge for a state name (css class `state-<name>`). */
export function badge(state, text) {
  const name = String(state || "unknown").toLowerCase();
  return h("span", { class: `badge state-${name.replace(/[^a-z-]/g, "-")}` }, text || name);
}

/** A unified diff with added and removed lines marked. */
export function diffView(diff) {
  if (!diff) return h("p", { class: "muted" }, "No changes.");
  const pre = h("pre", { class: "diff", tabindex: "0" });
  for (const line of diff.split("\n")) {
    let kind = "";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) kind = "file";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    else if (line.startsWith("@@")) kind = "hunk";
    pre.append(h("span", { class: kind ? `line ${kind}` : "line" }, line + "\n"));
  }
  return pre;
}
