// accounts.js: the admin page's user list: search, paging, and per-account actions
// (make/remove admin, deactivate/reactivate, reset password) plus "create an account".
import { $, h, clear, parseTime } from './dom.js';
import { api } from './api.js';

const PAGE = 50;
let shown = 0;
let hooks = null;

// hooks: { say(text, isError), refused(), me() } from admin.js.
export function wireAccounts(h0) {
  hooks = h0;
  let timer = null;
  $('#account-q').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => loadAccounts(), 250);
  });
  $('#account-search').addEventListener('submit', (e) => {
    e.preventDefault();
    loadAccounts();
  });
  $('#accounts-more').addEventListener('click', () => loadAccounts(true));
  $('#create-account').addEventListener('submit', createAccount);
}

export async function loadAccounts(more = false) {
  const offset = more ? shown : 0;
  let d;
  try {
    d = await api('admin/users/', { query: { q: $('#account-q').value.trim(), limit: PAGE, offset } });
  } catch (e) {
    if (e.status === 403) return hooks.refused();
    return hooks.say(e.message, true);
  }
  const body = $('#users-table tbody');
  if (!more) clear(body);
  for (const u of d.users) body.append(row(u));
  shown = offset + d.users.length;
  $('#accounts-more').hidden = shown >= d.total;
  $('#account-count').textContent = `${d.total} account${d.total === 1 ? '' : 's'}`;
}

function button(label, who, onclick, secondary) {
  const b = h('button', { type: 'button', class: 'small' + (secondary ? ' secondary' : ''), onclick }, label);
  b.setAttribute('aria-label', `${label}: ${who}`);
  return b;
}

function row(u) {
  const joined = parseTime(u.date_joined);
  // The role button comes first in the row.
  const role = u.is_admin
    ? button('Remove admin', u.username, () => act('remove-admin/', { target_username: u.username }), true)
    : button('Make admin', u.username, () => act('make-admin/', { target_username: u.username }));
  // Your own account cannot be deactivated from here (the server refuses it too).
  const self = u.username === hooks.me();
  const active = self ? null : u.is_active
    ? button('Deactivate', u.username, () => act('admin/deactivate/', { username: u.username }), true)
    : button('Reactivate', u.username, () => act('admin/activate/', { username: u.username }));
  const reset = button('Reset password', u.username, () => act('admin/reset-password/', { username: u.username }), true);
  reset.classList.add('reset');
  return h('tr', { 'data-user': u.username, class: u.is_active ? '' : 'inactive' },
    h('td', {}, h('strong', { text: u.username })),
    h('td', { text: u.email }),
    h('td', { text: isNaN(joined) ? '' : joined.toLocaleDateString() }),
    h('td', { class: 'num', text: String(u.message_count) }),
    h('td', { class: 'state', text: u.is_active ? 'Active' : 'Inactive' }),
    h('td', { class: 'role' + (u.is_admin ? ' is-admin' : ''), text: u.is_admin ? 'Admin' : 'User' }),
    h('td', {}, h('div', { class: 'actions' }, role, active, reset)));
}

async function act(path, body) {
  hooks.say('');
  try {
    const r = await api(path, { method: 'POST', body });
    // A generated password is shown once, here.
    hooks.say(r.password ? `${r.message}. New password: ${r.password}` : r.message || 'Done');
  } catch (e) {
    if (e.status === 403) return hooks.refused();
    hooks.say(e.message, true);
  }
  await loadAccounts();
}

async function createAccount(e) {
  e.preventDefault();
  const body = {
    username: $('#new-username').value.trim(),
    password: $('#new-password').value,
    is_admin: $('#new-admin').checked,
  };
  const email = $('#new-email').value.trim();
  if (email) body.email = email;
  try {
    const r = await api('admin/users/', { method: 'POST', body });
    hooks.say(r.message);
    $('#create-account').reset();
  } catch (err) {
    if (err.status === 403) return hooks.refused();
    hooks.say(err.message, true);
  }
  await loadAccounts();
}
