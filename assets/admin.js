// admin.js: the /admin dashboard: stat cards, two small SVG charts, the recent request
// log, and (from accounts.js and invites.js) users and invites. Admins only; others see a
// refusal.
import { $, h, s, clear, parseTime } from './dom.js';
import { api } from './api.js';
import { wireAccounts, loadAccounts } from './accounts.js';
import { wireInvites, loadInvites } from './invites.js';

let me = null;
let wired = false;

export async function showAdmin(user) {
  me = user;
  wire();
  $('#admin-msg').textContent = '';
  // Ask again: the user may have been promoted or demoted since logging in.
  try {
    const v = await api('verify-admin/', { method: 'POST', body: {} });
    me.is_admin = v.is_admin;
  } catch (e) {
    /* keep what we knew */
  }
  if (!me.is_admin) return refuse();
  await load();
}

function refuse() {
  if (me) me.is_admin = false;
  $('#nav-admin').hidden = true;
  $('#admin-dash').hidden = true;
  $('#admin-refusal').hidden = false;
  clear($('#cards'));
  clear($('#users-table tbody'));
  clear($('#invites-table tbody'));
}

function say(text, isError = false) {
  const msg = $('#admin-msg');
  msg.textContent = text;
  msg.classList.toggle('error', isError);
}

async function load() {
  let data;
  try {
    data = await api('admin/stats/');
  } catch (e) {
    if (e.status === 403) return refuse();
    $('#admin-msg').textContent = e.message;
    return;
  }
  $('#admin-refusal').hidden = true;
  $('#admin-dash').hidden = false;
  render(data);
  await Promise.all([loadAccounts(), loadInvites()]);
}

function render(d) {
  const cards = clear($('#cards'));
  const items = [
    ['Total users', d.total_users],
    ['API calls today', d.api_calls_today],
    ['Active sessions', d.active_sessions],
    ['Total messages', d.total_messages],
    ['Revenue', '$' + Number(d.revenue).toFixed(2)],
  ];
  for (const [label, value] of items) {
    cards.append(h('div', { class: 'card stat' }, h('span', { class: 'stat-label', text: label }), h('span', { class: 'stat-value', text: String(value) })));
  }
  const days = d.user_growth.map((_, i) => {
    const t = new Date(Date.now() - (d.user_growth.length - i) * 86400000);
    return t.toLocaleDateString([], { weekday: 'short' });
  });
  const hours = d.api_usage.map((_, i) => {
    const back = d.api_usage.length - 1 - i;
    return back === 0 ? 'now' : `-${back}h`;
  });
  clear($('#chart-growth')).append(chart(d.user_growth, days, 'sign-ups'));
  clear($('#chart-usage')).append(chart(d.api_usage, hours, 'calls'));

  const logs = clear($('#logs-table tbody'));
  for (const l of d.recent_logs) {
    const t = parseTime(l.created_at);
    logs.append(h('tr', {},
      h('td', { text: isNaN(t) ? l.created_at : t.toLocaleTimeString() }),
      h('td', { text: l.method }),
      h('td', { class: 'mono', text: l.endpoint }),
      h('td', { class: 'num' + (l.status >= 400 ? ' bad' : ''), text: String(l.status) }),
      h('td', { class: 'num', text: l.time }),
      h('td', { text: l.user }),
      h('td', { class: 'mono', text: l.ip_address })));
  }
}

// A bar chart as inline SVG; scales to its container through the viewBox.
function chart(values, labels, unit) {
  const W = 480, H = 150, top = 18, bottom = 22, gap = 14;
  const max = Math.max(1, ...values);
  const bw = (W - gap * (values.length + 1)) / values.length;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': values.map((v, i) => `${labels[i]}: ${v} ${unit}`).join(', ') });
  svg.append(s('line', { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, class: 'axis' }));
  values.forEach((v, i) => {
    const bh = ((H - top - bottom) * v) / max;
    const x = gap + i * (bw + gap);
    const y = H - bottom - bh;
    svg.append(
      s('rect', { x, y, width: bw, height: Math.max(bh, 1), rx: 3, class: 'bar' }, s('title', {}, `${labels[i]}: ${v} ${unit}`)),
      s('text', { x: x + bw / 2, y: y - 4, class: 'bar-value' }, String(v)),
      s('text', { x: x + bw / 2, y: H - 6, class: 'bar-label' }, labels[i]),
    );
  });
  return svg;
}

function wire() {
  if (wired) return;
  wired = true;
  const hooks = { say, refused: refuse, me: () => me && me.username };
  wireAccounts(hooks);
  wireInvites(hooks);
  $('#admin-refresh').addEventListener('click', () => {
    $('#admin-msg').textContent = '';
    load();
  });
}
