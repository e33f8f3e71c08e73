// The burndown chart as inline SVG: open, draft, merged and closed changesets over time,
// stacked, from `/api/v1/batch-changes/{name}/statistics`. Drawn from data alone (no
// library), with a table of the same numbers for screen readers.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  ["merged", "Merged", "#6f42c1"],
  ["closed", "Closed", "#9aa4ad"],
  ["open", "Open", "#2f8f46"],
  ["draft", "Draft", "#b7c1ca"],
];

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

export function burndownChart(points) {
  const width = 640;
  const height = 220;
  const left = 40;
  const bottom = 24;
  const top = 10;
  const right = 10;
  const figure = h("figure", { class: "chart" });
  if (!points.length || points.every((point) => point.total === 0)) {
    figure.append(h("p", { class: "muted" }, "The chart fills in once changesets are published."));
    return figure;
  }
  const maximum = Math.max(1, ...points.map((point) => point.total));
  const x = (index) => left + ((width - left - right) * index) / Math.max(1, points.length - 1);
  const y = (value) => top + (height - top - bottom) * (1 - value / maximum);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "burndown-title", class: "burndown" });
  chart.append(svg("title", { id: "burndown-title" }, "Changesets by state over time"));
  for (let tick = 0; tick <= 4; tick++) {
    const value = Math.round((maximum * tick) / 4);
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end", class: "axis" }, String(value)));
  }
  // Stacked areas, bottom to top in SERIES order.
  const base = points.map(() => 0);
  for (const [key, , color] of SERIES) {
    const tops = points.map((point, index) => base[index] + (point[key] || 0));
    const upper = tops.map((value, index) => `${x(index)},${y(value)}`);
    const lower = base.map((value, index) => `${x(index)},${y(value)}`).reverse();
    chart.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: color, class: `series-${key}` }));
    tops.forEach((value, index) => (base[index] = value));
  }
  const first = new Date(points[0].at).toLocaleDateString();
  const last = new Date(points[points.length - 1].at).toLocaleDateString();
  chart.append(svg("text", { x: left, y: height - 6, class: "axis" }, first));
  chart.append(svg("text", { x: width - right, y: height - 6, "text-anchor": "end", class: "axis" }, last));
  figure.append(chart);
  figure.append(
    h(
      "figcaption",
      {},
      h("ul", { class: "legend" }, SERIES.map(([key, label]) => h("li", {}, h("span", { class: `swatch swatch-${key}` }), label))),
    ),
  );
  const latest = points[points.length - 1];
  figure.append(
    h(
      "table",
      { class: "visually-hidden" },
      h("caption", {}, "Latest point of the burndown chart"),
      h("tr", {}, SERIES.map(([, label]) => h("th", { scope: "col" }, label))),
      h("tr", {}, SERIES.map(([key]) => h("td", {}, latest[key] || 0))),
    ),
  );
  return figure;
}
