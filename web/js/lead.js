/**
 * The pilot lead's page: the pilot's figures per region for a period (cards and bar charts),
 * the evidence of effect (healing figures and each wound's area curve), the session log behind
 * them (each consultation's events expandable), the travel table the lead keeps (which is also
 * the list of municipalities nurses register patients in), and CSV and FHIR downloads. The
 * date filter applies to everything shown and downloaded. Everything comes from /api/pilot/*;
 * the API only answers for the lead's own regions.
 */

import { getFile, getJson, putJson } from './api.js';
import { barChart, lineChart } from './charts.js';
import { byId, h } from './dom.js';
import { LANGUAGE_EVENT, formatNumber, language, setText, t } from './i18n.js';
import { startPage } from './page.js';

/**
 * @typedef {{values: number, median: number | null, p90: number | null}} Spread
 * @typedef {{
 *   region: string, name: string, consultations: number,
 *   waitSeconds: Spread, durationSeconds: Spread,
 *   reconnections: {count: number, perConsultation: number | null},
 *   quality: {bitrateKbps: Spread, lossPct: Spread, rttMs: Spread},
 *   snapshots: {count: number, perConsultation: number | null},
 *   outcomes: {treatedAtHome: number, referred: number, abandoned: number, none: number},
 *   travelAvoided: {km: number, hours: number, kmPerTrip: number, hoursPerTrip: number, placeholder: boolean},
 * }} RegionFigures
 * @typedef {{
 *   region: string, name: string, wounds: number, measured: number,
 *   areaReduction4w: {values: number, medianPct: number | null, atLeast40: number},
 *   healing: {healed: number, open: number, medianDays: number | null, p90Days: number | null},
 *   outcomes: {treatedAtHome: number, referred: number, none: number, shareAtHome: number | null},
 *   reReferrals: {count: number, ofKeptAtHome: number, share: number | null, withinDays: number},
 * }} RegionEffect
 * @typedef {{
 *   region: string, regionName: string, sent: number, answered: number, open: number,
 *   byUrgency: Record<string, number>, answerHours: Spread,
 * }} RegionEconsults
 * @typedef {{
 *   patient: string, region: string, firstAt: string, areas: {at: string, areaCm2: number}[],
 *   baselineCm2: number | null, reductionPct: number | null, daysToHealing: number | null, healedAt: string | null,
 * }} WoundCourse
 * @typedef {{at: string, kind: string, role: string | null, participant: string | null}} SessionEvent
 * @typedef {{
 *   id: string, region: string, patient: string, status: string, createdAt: string,
 *   startedAt: string | null, endedAt: string | null, waitSeconds: number | null,
 *   durationSeconds: number | null, reconnections: number, snapshots: number,
 *   outcome: string | null, events: SessionEvent[],
 * }} Session
 */

/** Roles that may see the pilot's figures (woundcare.auth.policy, Action.PILOT_FIGURES). */
const LEAD_ROLES = ['pilot_lead', 'admin'];

// page.js checks for one role; a pilot lead is what this page is for.
const me = await startPage(/** @type {any} */ ('pilot_lead'));

const form = /** @type {HTMLFormElement} */ (byId('filter'));
const regionSelect = /** @type {HTMLSelectElement} */ (byId('region'));
const fromInput = /** @type {HTMLInputElement} */ (byId('from'));
const toInput = /** @type {HTMLInputElement} */ (byId('to'));
const status = byId('lead-status');
const error = byId('lead-error');

/** @type {{figures: RegionFigures[], sessions: Session[], effect: RegionEffect[], wounds: WoundCourse[], econsults: RegionEconsults[]} | null} */
let shown = null;
/** Region names by code, for the session list. @type {Map<string, string>} */
const regionNames = new Map();

/** @param {{code: string, name: string, roles: string[]}[]} regions */
function fillRegions(regions) {
  const travelRegions = /** @type {HTMLSelectElement} */ (byId('travel-region'));
  travelRegions.replaceChildren();
  for (const region of regions) {
    // Only a pilot lead edits the travel table (Action.PILOT_TRAVEL_EDIT).
    if (region.roles.includes('pilot_lead')) travelRegions.append(h('option', { value: region.code }, region.name));
    if (!region.roles.some((role) => LEAD_ROLES.includes(role))) continue;
    regionNames.set(region.code, region.name);
    regionSelect.append(h('option', { value: region.code }, region.name));
  }
}

/** The current filter as a query string ("" when nothing is chosen). */
function query() {
  const params = new URLSearchParams();
  if (regionSelect.value) params.set('region', regionSelect.value);
  if (fromInput.value) params.set('from', fromInput.value);
  if (toInput.value) params.set('to', toInput.value);
  const text = params.toString();
  return text ? `?${text}` : '';
}

// ---- formatting -------------------------------------------------------------------------

/** @param {number | null | undefined} value @param {number} [digits] */
function num(value, digits = 2) {
  return value == null ? '–' : formatNumber(value, digits);
}

/** A span of time in seconds as "4 min 5 s" / "1 t 12 min". @param {number | null | undefined} seconds */
function duration(seconds) {
  if (seconds == null) return '–';
  const whole = Math.round(seconds);
  if (whole < 60) return t('lead.unit.s', { s: whole });
  if (whole < 3600) return t('lead.unit.ms', { m: Math.floor(whole / 60), s: whole % 60 });
  return t('lead.unit.hm', { h: Math.floor(whole / 3600), m: Math.floor((whole % 3600) / 60) });
}

/** @param {string | null} iso */
function dateTime(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString(language(), { dateStyle: 'short', timeStyle: 'medium' });
}

/** @param {string} iso */
function time(iso) {
  return new Date(iso).toLocaleTimeString(language(), { timeStyle: 'medium' });
}

// ---- figure cards -----------------------------------------------------------------------

/**
 * One figure: a label, the number (its raw value in data-value for tests and tools), a note.
 * @param {string} key
 * @param {string} labelKey
 * @param {string} text
 * @param {number | null} raw
 * @param {string} [noteKey]
 */
function figure(key, labelKey, text, raw, noteKey) {
  const label = h('dt', {});
  setText(label, labelKey);
  const value = h('dd', { class: 'figure-value', 'data-figure': key, 'data-value': raw == null ? '' : String(raw) }, text);
  const item = h('div', { class: 'figure' }, label, value);
  if (noteKey) {
    const note = h('dd', { class: 'figure-note' });
    setText(note, noteKey);
    item.append(note);
  }
  return item;
}

/** @param {RegionFigures} f */
function regionCard(f) {
  return regionArticle(f, [
    figure('consultations', 'lead.fig.consultations', String(f.consultations), f.consultations),
    figure('wait-median', 'lead.fig.waitMedian', duration(f.waitSeconds.median), f.waitSeconds.median),
    figure('wait-p90', 'lead.fig.waitP90', duration(f.waitSeconds.p90), f.waitSeconds.p90),
    figure('duration-median', 'lead.fig.durationMedian', duration(f.durationSeconds.median), f.durationSeconds.median),
    figure('reconnections', 'lead.fig.reconnections', String(f.reconnections.count), f.reconnections.count),
    figure('snapshots-per', 'lead.fig.snapshotsPer', num(f.snapshots.perConsultation), f.snapshots.perConsultation),
    figure('treated-at-home', 'lead.fig.treatedAtHome', String(f.outcomes.treatedAtHome), f.outcomes.treatedAtHome),
    figure('referred', 'lead.fig.referred', String(f.outcomes.referred), f.outcomes.referred),
    figure('abandoned', 'lead.fig.abandoned', String(f.outcomes.abandoned), f.outcomes.abandoned),
    figure('travel-km', 'lead.fig.travelKm', t('lead.unit.km', { km: num(f.travelAvoided.km, 0) }), f.travelAvoided.km, 'lead.estimate'),
    figure('travel-hours', 'lead.fig.travelHours', t('lead.unit.h', { h: num(f.travelAvoided.hours, 1) }), f.travelAvoided.hours, 'lead.estimate'),
  ]);
}

/**
 * A region's card: its name and its figures.
 * @param {{region: string, name: string}} f
 * @param {HTMLElement[]} figures
 */
function regionArticle(f, figures) {
  const list = h('dl', { class: 'figures' }, ...figures);
  return h('article', { class: 'region-card', 'data-region': f.region, 'aria-label': f.name }, h('h3', {}, f.name), list);
}

// ---- charts -----------------------------------------------------------------------------

/** @param {RegionFigures[]} figures */
function charts(figures) {
  const minutes = (/** @type {number | null} */ s) => (s == null ? null : s / 60);
  return [
    barChart({
      label: t('lead.chart.consultations'),
      stacked: true,
      format: (v) => formatNumber(v, 0),
      series: [
        { key: 'home', label: t('outcome.treated_at_home'), className: 'fill-home' },
        { key: 'referred', label: t('outcome.referred'), className: 'fill-referred' },
        { key: 'abandoned', label: t('lead.fig.abandoned'), className: 'fill-abandoned' },
        { key: 'none', label: t('lead.outcome.none'), className: 'fill-none' },
      ],
      groups: figures.map((f) => ({
        label: f.name,
        values: {
          home: f.outcomes.treatedAtHome, referred: f.outcomes.referred,
          abandoned: f.outcomes.abandoned, none: f.outcomes.none,
        },
      })),
    }),
    barChart({
      label: t('lead.chart.wait'),
      format: (v) => formatNumber(v, 1),
      series: [
        { key: 'median', label: t('lead.median'), className: 'fill-median' },
        { key: 'p90', label: t('lead.p90'), className: 'fill-p90' },
      ],
      groups: figures.map((f) => ({
        label: f.name, values: { median: minutes(f.waitSeconds.median), p90: minutes(f.waitSeconds.p90) },
      })),
    }),
    barChart({
      label: t('lead.chart.loss'),
      format: (v) => formatNumber(v, 2),
      series: [
        { key: 'median', label: t('lead.median'), className: 'fill-median' },
        { key: 'p90', label: t('lead.p90'), className: 'fill-p90' },
      ],
      groups: figures.map((f) => ({ label: f.name, values: { median: f.quality.lossPct.median, p90: f.quality.lossPct.p90 } })),
    }),
    barChart({
      label: t('lead.chart.rtt'),
      format: (v) => formatNumber(v, 0),
      series: [
        { key: 'median', label: t('lead.median'), className: 'fill-median' },
        { key: 'p90', label: t('lead.p90'), className: 'fill-p90' },
      ],
      groups: figures.map((f) => ({ label: f.name, values: { median: f.quality.rttMs.median, p90: f.quality.rttMs.p90 } })),
    }),
  ];
}

// ---- evidence of effect -----------------------------------------------------------------

/** A share (0..1) as a percentage. @param {number | null} share */
function percent(share) {
  return share == null ? '–' : t('lead.unit.pct', { pct: num(share * 100, 0) });
}

/** A count: its value is its text. @param {string} key @param {string} labelKey @param {number} value */
function count(key, labelKey, value) {
  return figure(key, labelKey, String(value), value);
}

/** @param {RegionEffect} f */
function effectCard(f) {
  const days = (/** @type {number | null} */ d) => (d == null ? '–' : t('lead.unit.days', { d: num(d, 1) }));
  const { areaReduction4w: area, healing, outcomes, reReferrals: again } = f;
  const medianPct = area.medianPct == null ? '–' : t('lead.unit.pct', { pct: num(area.medianPct, 0) });
  return regionArticle(f, [
    count('wounds', 'lead.eff.wounds', f.wounds),
    count('measured', 'lead.eff.measured', f.measured),
    figure('reduction-median', 'lead.eff.reductionMedian', medianPct, area.medianPct),
    count('reduction-wounds', 'lead.eff.reductionWounds', area.values),
    count('reduction-40', 'lead.eff.reduction40', area.atLeast40),
    count('healed', 'lead.eff.healed', healing.healed),
    figure('healing-median', 'lead.eff.healingMedian', days(healing.medianDays), healing.medianDays),
    figure('healing-p90', 'lead.eff.healingP90', days(healing.p90Days), healing.p90Days),
    figure('share-home', 'lead.eff.shareHome', percent(outcomes.shareAtHome), outcomes.shareAtHome),
    count('re-referred', 'lead.eff.reReferred', again.count),
    figure('re-referral-share', 'lead.eff.reReferralShare', percent(again.share), again.share),
  ]);
}

/** E-consults, counted apart from the video calls, with their time to answer. @param {RegionEconsults} f */
function econsultCard(f) {
  const hours = (/** @type {number | null} */ v) => (v == null ? '–' : t('lead.unit.h', { h: num(v, 1) }));
  return regionArticle({ region: f.region, name: f.regionName }, [
    count('econsults-sent', 'lead.econ.sent', f.sent),
    count('econsults-answered', 'lead.econ.answered', f.answered),
    count('econsults-open', 'lead.econ.open', f.open),
    count('econsults-urgent', 'lead.econ.urgent', f.byUrgency.urgent ?? 0),
    figure('econsults-answer-median', 'lead.econ.answerMedian', hours(f.answerHours.median), f.answerHours.median),
    figure('econsults-answer-p90', 'lead.econ.answerP90', hours(f.answerHours.p90), f.answerHours.p90),
  ]);
}

const DAY_MS = 86_400_000;

/** Each wound's area in % of its first measurement, by day since then; one chart per region. @param {RegionEffect[]} effect @param {WoundCourse[]} wounds */
function woundCurves(effect, wounds) {
  return effect.filter((f) => wounds.some((w) => w.region === f.region && w.areas.length)).map((f) => lineChart({
    label: t('lead.chart.woundArea', { region: f.name }),
    xLabel: t('lead.chart.daysSinceFirst'),
    yLabel: '%',
    format: (v) => formatNumber(v, 0),
    lines: wounds.filter((w) => w.region === f.region && w.areas.length).map((w) => {
      const start = Date.parse(w.areas[0].at);
      const base = w.areas[0].areaCm2;
      const points = w.areas.map((a) => ({ x: (Date.parse(a.at) - start) / DAY_MS, y: (100 * a.areaCm2) / base }));
      // A healing is an area of 0 (an outline can't have none), as the figures count it.
      if (w.healedAt && Date.parse(w.healedAt) >= start) points.push({ x: (Date.parse(w.healedAt) - start) / DAY_MS, y: 0 });
      return { label: w.patient, points };
    }),
  }));
}

// ---- travel table -------------------------------------------------------------------------

const travelForm = /** @type {HTMLFormElement} */ (byId('travel-form'));
const travelRegion = /** @type {HTMLSelectElement} */ (byId('travel-region'));
const travelStatus = byId('travel-status');
const travelError = byId('travel-error');

/** The region's distances, also the municipalities a nurse may register patients in. */
async function loadTravel() {
  const body = byId('travel-body');
  if (!travelRegion.value) {
    body.replaceChildren();
    return;
  }
  try {
    const table = await getJson(`/api/pilot/travel?region=${encodeURIComponent(travelRegion.value)}`);
    body.replaceChildren(...table.municipalities.map((/** @type {{municipality: string, km: number, hours: number}} */ row) =>
      h('tr', { 'data-municipality': row.municipality },
        h('td', {}, row.municipality), h('td', { class: 'num' }, num(row.km, 1)), h('td', { class: 'num' }, num(row.hours, 1)))));
  } catch {
    setText(travelError, 'error.generic');
  }
}

travelForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  travelError.textContent = '';
  travelStatus.textContent = '';
  const data = new FormData(travelForm);
  const municipality = String(data.get('municipality') ?? '').trim();
  const region = travelRegion.value;
  try {
    await putJson('/api/pilot/travel', { region, municipality, km: Number(data.get('km')), hours: Number(data.get('hours')) });
    setText(travelStatus, 'lead.travel.saved', { municipality });
    travelForm.reset();
    travelRegion.value = region; // reset() would go back to the first region
    await loadTravel();
    await Promise.all([load(), loadTravel()]);
  } catch (failure) {
    const code = /** @type {{code?: string}} */ (failure).code;
    setText(travelError, code === 'bad_request' ? 'lead.travel.invalid' : 'error.generic');
  }
});
travelRegion.addEventListener('change', () => loadTravel());

// ---- sessions ---------------------------------------------------------------------------

/** @param {string} prefix @param {string | null} value */
function translated(prefix, value) {
  if (!value) return '–';
  const key = `${prefix}.${value}`;
  const text = t(key);
  return text === key ? value : text;
}

/** The event log of one session, as a list. @param {Session} session */
function eventLog(session) {
  if (!session.events.length) {
    const empty = h('p', {});
    setText(empty, 'lead.log.empty');
    return empty;
  }
  return h('ol', { class: 'event-log' }, ...session.events.map((event) => h('li', { 'data-kind': event.kind },
    h('time', { datetime: event.at }, time(event.at)), ' ',
    h('span', { class: 'event-kind' }, translated('lead.event', event.kind)), ' ',
    h('span', { class: 'event-role' }, translated('role', event.role)))));
}

/** @param {Session} session */
function sessionRows(session) {
  const logId = `log-${session.id}`;
  const toggle = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': logId });
  setText(toggle, 'lead.log.show');
  const cell = h('td', { colspan: '10' });
  const logRow = h('tr', { id: logId, class: 'log-row', hidden: '' }, cell);
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    if (open && !cell.firstChild) cell.append(eventLog(session));
    toggle.setAttribute('aria-expanded', String(open));
    setText(toggle, open ? 'lead.log.hide' : 'lead.log.show');
    logRow.hidden = !open;
  });
  const row = h('tr', { 'data-session': session.id, 'data-region': session.region },
    h('td', {}, h('time', { datetime: session.createdAt }, dateTime(session.createdAt))),
    h('td', {}, regionNames.get(session.region) ?? session.region),
    h('td', { class: 'mono' }, session.patient),
    h('td', {}, translated('lead.status', session.status)),
    h('td', {}, duration(session.waitSeconds)),
    h('td', {}, duration(session.durationSeconds)),
    h('td', { class: 'num' }, String(session.reconnections)),
    h('td', { class: 'num' }, String(session.snapshots)),
    h('td', {}, translated('outcome', session.outcome)),
    h('td', {}, toggle));
  return [row, logRow];
}

// ---- loading ----------------------------------------------------------------------------

function render() {
  if (!shown) return;
  const { figures, sessions, effect, wounds, econsults } = shown;
  byId('figure-cards').replaceChildren(...figures.map(regionCard));
  byId('effect-cards').replaceChildren(...effect.map(effectCard));
  byId('econsult-cards').replaceChildren(...econsults.map(econsultCard));
  byId('wound-curves').replaceChildren(...woundCurves(effect, wounds));
  byId('charts').replaceChildren(...(figures.length ? charts(figures) : []));
  byId('sessions-body').replaceChildren(...sessions.flatMap(sessionRows));
  setText(byId('sessions-count'), 'lead.sessionsCount', { n: sessions.length });
  setText(status, figures.length ? 'lead.loaded' : 'lead.noRegions', { n: figures.length });
}

/** The download links (id, path): each gets the filter's query. */
const DOWNLOADS = [
  ['figures-csv', '/api/pilot/figures.csv'], ['sessions-csv', '/api/pilot/sessions.csv'],
  ['effect-csv', '/api/pilot/effect.csv'], ['wounds-csv', '/api/pilot/wounds.csv'], ['effect-fhir', '/api/pilot/effect.fhir'],
];

async function load() {
  const q = query();
  for (const [id, path] of DOWNLOADS) /** @type {HTMLAnchorElement} */ (byId(id)).href = `${path}${q}`;
  error.textContent = '';
  setText(status, 'lead.loading');
  try {
    const [figures, sessions, effect, econsults] = await Promise.all([
      getJson(`/api/pilot/figures${q}`), getJson(`/api/pilot/sessions${q}`), getJson(`/api/pilot/effect${q}`),
      getJson(`/api/pilot/econsults${q}`),
    ]);
    shown = {
      figures: figures.regions, sessions: sessions.sessions, effect: effect.regions, wounds: effect.wounds,
      econsults: econsults.regions,
    };
    render();
  } catch (failure) {
    status.textContent = '';
    const code = /** @type {{code?: string}} */ (failure).code;
    setText(error, code === 'bad_period' || code === 'bad_date' ? 'lead.error.period' : 'error.generic');
  }
}

fillRegions(me.regions);
try {
  // The session already names the regions; /api/regions is the list's source of truth.
  const { regions } = await getJson('/api/regions');
  regionSelect.replaceChildren(/** @type {HTMLOptionElement} */ (regionSelect.options[0]));
  regionNames.clear();
  fillRegions(regions);
} catch {
  // Keep the session's list.
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  load();
});
// A plain link is a navigation, which a session that has ended answers with a bare 401 page;
// fetched through api.js, the re-login dialog answers it and the download follows.
for (const link of DOWNLOADS.map(([id]) => byId(id))) {
  link.addEventListener('click', async (event) => {
    event.preventDefault();
    try {
      const { blob, name } = await getFile(/** @type {string} */ (link.getAttribute('href')));
      const url = URL.createObjectURL(blob);
      h('a', { href: url, download: name }).click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch {
      setText(error, 'error.generic');
    }
  });
}
for (const input of [regionSelect, fromInput, toInput]) input.addEventListener('change', () => load());
window.addEventListener(LANGUAGE_EVENT, render);

await load();
