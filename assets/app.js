// app.js: entry point. Finds out who is logged in, runs the sign-in form, and routes
// between the chat (/) and the admin page (/admin) with history.pushState.
import { $ } from './dom.js';
import { api, setUnauthorizedHandler } from './api.js';
import { startChat, stopChat } from './chat.js';
import { showAdmin } from './admin.js';

let me = null;

function show(view) {
  for (const id of ['booting', 'auth-view', 'chat-view', 'admin-view']) $('#' + id).hidden = id !== view;
  $('#topbar').hidden = !me;
}

// Asks the server who may sign up and shapes the form: an invite code field (filled from
// an invite link's ?invite=), or no sign-up button on a closed server.
async function signupMode() {
  let mode = 'open';
  try {
    mode = (await api('signup/')).mode;
  } catch (e) {
    /* assume open; the server refuses with a clear message if not */
  }
  const code = new URLSearchParams(location.search).get('invite');
  $('#invite-field').hidden = mode !== 'invite';
  if (code) $('#auth-invite').value = code;
  $('#signup-btn').hidden = mode === 'closed';
  const note = $('#signup-note');
  note.hidden = mode === 'open';
  note.textContent = mode === 'closed'
    ? 'Sign-up is closed here: ask an admin for an account.'
    : 'Signing up needs an invite code from an admin.';
}

function route() {
  if (!me) {
    show('auth-view');
    signupMode();
    $('#auth-username').focus();
    return;
  }
  const path = location.pathname.replace(/\/+$/, '');
  const admin = path === '/admin';
  $('#nav-chat').setAttribute('aria-current', admin ? 'false' : 'page');
  $('#nav-admin').setAttribute('aria-current', admin ? 'page' : 'false');
  if (admin) {
    show('admin-view');
    $('#admin-dash').hidden = true;
    $('#admin-refusal').hidden = true;
    showAdmin(me);
  } else {
    show('chat-view');
  }
}

function navigate(href) {
  if (href !== location.pathname) history.pushState(null, '', href);
  route();
}

function signedIn(user) {
  me = { username: user.username, is_admin: !!user.is_admin };
  $('#me-name').textContent = me.username;
  $('#nav-admin').hidden = !me.is_admin;
  $('#auth-form').reset();
  $('#auth-error').textContent = '';
  startChat(me);
  route();
}

function signedOut() {
  if (!me) return;
  me = null;
  stopChat();
  route();
}

async function login(username, password) {
  const r = await api('login/', { method: 'POST', body: { username, password } });
  signedIn(r);
}

async function onAuth(ev, signup) {
  ev.preventDefault();
  const err = $('#auth-error');
  const username = $('#auth-username').value.trim();
  const password = $('#auth-password').value;
  const email = $('#auth-email').value.trim();
  const invite = $('#auth-invite').value.trim();
  err.textContent = '';
  if (!username || !password) {
    err.textContent = 'Enter a username and a password.';
    return;
  }
  const buttons = [$('#login-btn'), $('#signup-btn')];
  buttons.forEach((b) => (b.disabled = true));
  try {
    if (signup) {
      const body = { username, password };
      if (email) body.email = email;
      if (invite) body.invite_code = invite;
      await api('signup/', { method: 'POST', body });
      // The invite is spent: a reload should not offer it again.
      if (location.search) history.replaceState(null, '', location.pathname);
    }
    await login(username, password);
  } catch (e) {
    err.textContent = e.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function boot() {
  try {
    const r = await api('verify-admin/', { method: 'POST', body: {} });
    signedIn(r);
  } catch (e) {
    if (e.status === 0) {
      // Server unreachable: the banner says so; try again shortly.
      setTimeout(boot, 3000);
      return;
    }
    route();
  }
}

setUnauthorizedHandler(signedOut);
$('#auth-form').addEventListener('submit', (e) => onAuth(e, false));
$('#signup-btn').addEventListener('click', (e) => onAuth(e, true));
$('#logout').addEventListener('click', async () => {
  try {
    await api('logout/', { method: 'POST', body: {} });
  } catch (e) {
    /* signed out locally either way */
  }
  signedOut();
  // Whoever logs in next starts at the chat, not on this user's page.
  if (location.pathname !== '/') history.replaceState(null, '', '/');
});
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', route);
boot();
