/**
 * Bar charts as inline SVG, built through the DOM (the CSP allows no inline script or style and
 * nothing from outside the server, so no chart library). Colours come from classes in
 * css/lead.css; every bar carries a <title> with its value, and the chart an aria-label that
 * says the same in words, so a screen reader gets the numbers without the picture.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @param {...(Node | string)} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}, ...children) {
  const made = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  for (const [name, value] of Object.entries(attrs)) made.setAttribute(name, String(value));
  made.append(...children);
  return made;
}

/**
 * @typedef {{key: string, label: string, className: string}} Series
 * @typedef {{label: string, values: Record<string, number | null>}} Group
 * @typedef {{
 *   label: string,
 *   series: Series[],
 *   groups: Group[],
 *   stacked?: boolean,
 *   format?: (value: number) => string,
 *   empty?: string,
 * }} BarChart
 */

const WIDTH = 640;
const HEIGHT = 260;
const PAD = { top: 16, right: 12, bottom: 40, left: 56 };
const TICKS = 4;

/** A round upper bound for the axis: 1, 2, 2.5 or 5 times a power of ten. @param {number} max */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

/**
 * A vertical bar chart: one group of bars per category, side by side or stacked, with a legend.
 * Missing values (null) draw no bar.
 * @param {BarChart} chart
 * @returns {HTMLElement} a <figure> holding the <svg> and its legend
 */
export function barChart(chart) {
  const format = chart.format ?? ((value) => String(value));
  const totals = chart.groups.map((group) => {
    const values = chart.series.map((s) => group.values[s.key] ?? 0);
    return chart.stacked ? values.reduce((a, b) => a + b, 0) : Math.max(0, ...values);
  });
  const top = niceMax(Math.max(0, ...totals));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (/** @type {number} */ value) => PAD.top + plotH - (value / top) * plotH;

  const summary = chart.groups.map((group) => `${group.label}: ${chart.series
    .map((s) => `${s.label} ${group.values[s.key] == null ? '–' : format(/** @type {number} */ (group.values[s.key]))}`)
    .join(', ')}`).join('; ');
  const root = svg('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': `${chart.label}. ${summary}`,
  });

  const axis = svg('g', { class: 'chart-axis', 'aria-hidden': 'true' });
  for (let i = 0; i <= TICKS; i += 1) {
    const value = (top / TICKS) * i;
    axis.append(
      svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: i ? 'chart-grid' : 'chart-base' }),
      svg('text', { x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, format(value)),
    );
  }
  root.append(axis);

  const slot = plotW / Math.max(1, chart.groups.length);
  const bars = svg('g', { class: 'chart-bars' });
  chart.groups.forEach((group, index) => {
    const x0 = PAD.left + slot * index + slot * 0.15;
    const inner = slot * 0.7;
    const width = chart.stacked ? inner : inner / chart.series.length;
    let base = 0;
    chart.series.forEach((series, k) => {
      const value = group.values[series.key];
      if (value == null) return;
      const from = chart.stacked ? base : 0;
      const to = from + value;
      base = to;
      const x = chart.stacked ? x0 : x0 + k * width;
      const height = Math.max(0, y(from) - y(to));
      bars.append(svg('rect', {
        x: x.toFixed(1), y: y(to).toFixed(1), width: Math.max(1, width - 2).toFixed(1), height: height.toFixed(1),
        class: `bar ${series.className}`, 'data-series': series.key, 'data-group': group.label, 'data-value': value,
      }, svg('title', {}, `${group.label} – ${series.label}: ${format(value)}`)));
    });
    bars.append(svg('text', {
      x: (PAD.left + slot * index + slot / 2).toFixed(1), y: HEIGHT - PAD.bottom + 20, 'text-anchor': 'middle', class: 'chart-label',
    }, group.label));
  });
  root.append(bars);

  const legend = document.createElement('ul');
  legend.className = 'chart-legend';
  legend.setAttribute('aria-hidden', 'true');
  for (const series of chart.series) {
    const item = document.createElement('li');
    const swatch = svg('svg', { viewBox: '0 0 10 10', class: 'swatch' }, svg('rect', { width: 10, height: 10, class: series.className }));
    item.append(swatch, series.label);
    legend.append(item);
  }

  return chartFigure(chart.label, root, legend);
}

/**
 * A chart's <figure>, captioned.
 * @param {string} label
 * @param {...Node} parts
 * @returns {HTMLElement}
 */
function chartFigure(label, ...parts) {
  const figure = document.createElement('figure');
  figure.className = 'chart-figure';
  const caption = document.createElement('figcaption');
  caption.textContent = label;
  figure.append(caption, ...parts);
  return figure;
}

/**
 * @typedef {{x: number, y: number}} LinePoint
 * @typedef {{label: string, points: LinePoint[]}} Line
 * @typedef {{
 *   label: string,
 *   xLabel: string,
 *   yLabel: string,
 *   lines: Line[],
 *   xMax?: number,
 *   format?: (value: number) => string,
 * }} LineChart
 */

/**
 * Lines over a shared x axis (e.g. each wound's area, in % of its first measurement, by day),
 * from 0 on both axes. Each line carries a <title> with its label and points, and the chart an
 * aria-label with every line's last point, so the picture is not the only way to the numbers.
 * @param {LineChart} chart
 * @returns {HTMLElement} a <figure> holding the <svg>
 */
export function lineChart(chart) {
  const format = chart.format ?? ((value) => String(value));
  const all = chart.lines.flatMap((line) => line.points);
  const xTop = niceMax(chart.xMax ?? Math.max(0, ...all.map((p) => p.x)));
  const yTop = niceMax(Math.max(0, ...all.map((p) => p.y)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (/** @type {number} */ value) => PAD.left + (Math.min(value, xTop) / xTop) * plotW;
  const y = (/** @type {number} */ value) => PAD.top + plotH - (value / yTop) * plotH;

  const summary = chart.lines.map((line) => {
    const last = line.points[line.points.length - 1];
    return last ? `${line.label}: ${format(last.y)} (${format(last.x)})` : line.label;
  }).join('; ');
  const root = svg('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': `${chart.label}. ${summary}`,
  });
  const axis = svg('g', { class: 'chart-axis', 'aria-hidden': 'true' });
  for (let i = 0; i <= TICKS; i += 1) {
    const yValue = (yTop / TICKS) * i;
    const xValue = (xTop / TICKS) * i;
    axis.append(
      svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(yValue), y2: y(yValue), class: i ? 'chart-grid' : 'chart-base' }),
      svg('text', { x: PAD.left - 6, y: y(yValue) + 4, 'text-anchor': 'end' }, format(yValue)),
      svg('text', { x: x(xValue), y: HEIGHT - PAD.bottom + 16, 'text-anchor': 'middle' }, format(xValue)),
    );
  }
  axis.append(
    svg('text', { x: PAD.left + plotW / 2, y: HEIGHT - 6, 'text-anchor': 'middle', class: 'chart-label' }, chart.xLabel),
    svg('text', { x: 4, y: PAD.top - 4, class: 'chart-label' }, chart.yLabel),
  );
  root.append(axis);
  const lines = svg('g', { class: 'chart-lines' });
  for (const line of chart.lines) {
    if (!line.points.length) continue;
    const text = line.points.map((p) => `${format(p.x)}: ${format(p.y)}`).join(', ');
    const path = line.points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ');
    lines.append(svg('g', { class: 'chart-line', 'data-line': line.label, 'data-points': line.points.length },
      svg('title', {}, `${line.label} – ${text}`),
      svg('polyline', { points: path, class: 'line' }),
      ...line.points.map((p) => svg('circle', { cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r: 3, class: 'dot' }))));
  }
  root.append(lines);
  return chartFigure(chart.label, root);
}
