// invites.js: the admin page's invite codes: create one (uses, days, note) and get a link
// to send, see every code's state, revoke one.
import { $, h, clear, parseTime } from './dom.js';
import { api } from './api.js';

let hooks = null;

const MODES = {
  open: 'Sign-up is open: anyone who reaches this server can make an account. Invites are not needed.',
  invite: 'Sign-up needs an invite: create a code below and send its link.',
  closed: 'Sign-up is closed: accounts are made by admins (above) or on the command line.',
};

export function wireInvites(h0) {
  hooks = h0;
  $('#invite-form').addEventListener('submit', createInvite);
  $('#new-invite-link').addEventListener('focus', (e) => e.target.select());
}

function link(code) {
  return `${location.origin}/?invite=${encodeURIComponent(code)}`;
}

export async function loadInvites() {
  let d;
  try {
    d = await api('admin/invites/');
  } catch (e) {
    if (e.status === 403) return hooks.refused();
    return hooks.say(e.message, true);
  }
  $('#signup-mode').textContent = MODES[d.signup] || '';
  const body = clear($('#invites-table tbody'));
  for (const i of d.invites) {
    const expires = i.expires_at ? parseTime(i.expires_at).toLocaleString() : 'never';
    const revoke = i.state !== 'usable' ? null : h('button', { type: 'button', class: 'small secondary', onclick: () => revokeInvite(i.id) }, 'Revoke');
    if (revoke) revoke.setAttribute('aria-label', `Revoke invite ${i.code}`);
    body.append(h('tr', { 'data-code': i.code },
      h('td', { class: 'mono', text: i.code }),
      h('td', { text: i.note }),
      h('td', { class: 'num', text: `${i.uses}/${i.max_uses == null ? 'any' : i.max_uses}` }),
      h('td', { text: expires }),
      h('td', { class: 'state', text: i.state }),
      h('td', {}, revoke)));
  }
}

async function createInvite(e) {
  e.preventDefault();
  const uses = Number($('#invite-uses').value || 0);
  const days = Number($('#invite-days').value || 0);
  try {
    const i = await api('admin/invites/', {
      method: 'POST',
      body: { max_uses: uses, expires_in_days: days, note: $('#invite-note').value.trim() },
    });
    $('#new-invite').hidden = false;
    $('#new-invite-link').value = link(i.code);
    $('#invite-note').value = '';
    hooks.say(`Invite ${i.code} created`);
  } catch (err) {
    if (err.status === 403) return hooks.refused();
    hooks.say(err.message, true);
  }
  await loadInvites();
}

async function revokeInvite(id) {
  try {
    const r = await api('admin/invites/revoke/', { method: 'POST', body: { id } });
    hooks.say(r.message);
  } catch (err) {
    if (err.status === 403) return hooks.refused();
    hooks.say(err.message, true);
  }
  await loadInvites();
}
