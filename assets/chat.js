// chat.js: the conversation list, the new-chat picker, the thread view and the composer,
// kept current by the live event stream (events.js).
import { $, h, clear, shortTime, parseTime } from './dom.js';
import { api } from './api.js';
import { Live } from './events.js';

const PAGE = 50;
const TYPING_SEND_MS = 2000;
const TYPING_SHOW_MS = 3500;

let me = null;
let convs = new Map(); // other username -> conversation
let cur = null; // the open thread
let live = null;
let typingSentAt = 0;
const typingUntil = new Map(); // conversation id -> timer
let wired = false;
let stick = true; // the thread is scrolled to the bottom

export function startChat(user) {
  me = user;
  wire();
  convs = new Map();
  closeThread();
  renderList();
  refreshConversations();
  live = new Live({ message: onMessage, read: onRead, typing: onTyping, presence: onPresence, poll, resync });
  live.start();
}

export function stopChat() {
  if (live) live.stop();
  live = null;
  me = null;
  convs = new Map();
  cur = null;
  document.title = 'White Beat';
}

// ---- conversation list ----

export async function refreshConversations() {
  try {
    const data = await api('conversations/');
    const next = new Map();
    for (const c of data.conversations) next.set(c.other_user.username, c);
    convs = next;
    if (cur && convs.has(cur.other)) convs.get(cur.other).unread_count = 0;
    renderList();
  } catch (e) {
    /* banner or login screen already shows why */
  }
}

function sortedConvs() {
  return [...convs.values()].sort((a, b) => parseTime(b.updated_at) - parseTime(a.updated_at));
}

function renderList() {
  const list = clear($('#conv-list'));
  const all = sortedConvs();
  $('#conv-empty').hidden = all.length > 0;
  let unread = 0;
  for (const c of all) {
    unread += c.unread_count;
    const name = c.other_user.username;
    const lm = c.last_message;
    const typing = typingUntil.has(c.id);
    let preview = 'No messages yet';
    if (typing) preview = 'typing…';
    else if (lm) preview = (lm.sender === me.username ? 'You: ' : '') + lm.content;
    const btn = h(
      'button',
      { type: 'button', class: 'conv', 'data-user': name, 'aria-current': cur && cur.other === name ? 'true' : null, onclick: () => openThread(name) },
      h('span', { class: 'dot' + (c.other_user.is_online ? ' online' : ''), title: c.other_user.is_online ? 'Online' : 'Offline' }),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-top' }, h('span', { class: 'conv-name', text: name }), h('time', { class: 'conv-time', text: lm ? shortTime(lm.created_at) : '' })),
        h('span', { class: 'conv-bottom' },
          h('span', { class: 'conv-preview' + (typing ? ' is-typing' : ''), text: preview }),
          c.unread_count > 0 ? h('span', { class: 'badge', 'aria-label': `${c.unread_count} unread`, text: String(c.unread_count) }) : null))
    );
    list.append(h('li', {}, btn));
  }
  document.title = unread ? `(${unread}) White Beat` : 'White Beat';
  updateThreadDot();
}

// ---- new chat picker ----

let searchTimer = null;
let searchSeq = 0;

function togglePicker(show) {
  const picker = $('#picker');
  picker.hidden = show === undefined ? !picker.hidden : !show;
  $('#new-chat').setAttribute('aria-expanded', String(!picker.hidden));
  if (!picker.hidden) {
    $('#user-search').value = '';
    searchUsers();
    $('#user-search').focus();
  }
}

async function searchUsers() {
  const seq = ++searchSeq;
  const results = $('#user-results');
  try {
    const data = await api('users/', { query: { search: $('#user-search').value.trim(), limit: 20 } });
    if (seq !== searchSeq) return;
    clear(results);
    if (!data.users.length) results.append(h('li', { class: 'muted pad', text: 'No users found' }));
    for (const u of data.users) {
      results.append(h('li', {}, h('button', {
        type: 'button', class: 'user-pick', 'data-user': u.username,
        onclick: () => { togglePicker(false); openThread(u.username); },
      }, h('span', { class: 'dot' + (u.is_online ? ' online' : '') }), h('span', { text: u.username }))));
    }
  } catch (e) {
    if (seq !== searchSeq) return;
    clear(results).append(h('li', { class: 'error pad', text: e.message }));
  }
}

// ---- thread ----

function closeThread() {
  cur = null;
  $('#thread').hidden = true;
  $('#thread-empty').hidden = false;
  $('#chat-view').classList.remove('thread-open');
}

export async function openThread(other) {
  cur = { other, cid: null, msgs: new Map(), hasMore: false, loading: true, firstId: null };
  const mine = cur;
  $('#thread-title').textContent = other;
  updateThreadDot();
  clear($('#msg-list'));
  $('#typing').textContent = '';
  $('#send-error').textContent = '';
  $('#load-older').hidden = true;
  $('#thread').hidden = false;
  $('#thread-empty').hidden = true;
  $('#chat-view').classList.add('thread-open');
  const c = convs.get(other);
  if (c) c.unread_count = 0;
  renderList();
  try {
    const data = await api('messages/', { query: { other_username: other, limit: PAGE } });
    if (cur !== mine) return;
    cur.cid = data.conversation_id;
    cur.hasMore = data.has_more;
    for (const m of data.messages) addMessage(m, false);
    cur.loading = false;
    $('#load-older').hidden = !cur.hasMore;
    scrollToBottom();
    if (!convs.has(other)) refreshConversations();
  } catch (e) {
    if (cur === mine) $('#send-error').textContent = e.message;
  }
  $('#composer-input').focus();
}

function updateThreadDot() {
  if (!cur) return;
  const c = convs.get(cur.other);
  const online = c ? c.other_user.is_online : false;
  $('#thread-dot').className = 'dot' + (online ? ' online' : '');
  $('#thread-presence').textContent = online ? 'online' : 'offline';
}

function tick(m) {
  return m.is_read ? '✓✓' : '✓';
}

function messageEl(m) {
  const meta = h('span', { class: 'meta' }, h('time', { datetime: m.created_at, text: shortTime(m.created_at) }));
  if (m.is_mine) meta.append(h('span', { class: 'tick' + (m.is_read ? ' read' : ''), title: m.is_read ? 'Read' : 'Sent', text: tick(m) }));
  return h('li', { class: 'msg' + (m.is_mine ? ' mine' : ''), 'data-id': String(m.id) },
    h('span', { class: 'text', text: m.content }), meta);
}

// Adds a message to the open thread in id order; returns false if it was there already.
function addMessage(m, atEnd = true) {
  if (cur.msgs.has(m.id)) {
    const known = cur.msgs.get(m.id);
    if (m.is_read && !known.m.is_read) setRead(known);
    return false;
  }
  const el = messageEl(m);
  const list = $('#msg-list');
  let before = null;
  if (!atEnd || (cur.lastId != null && m.id < cur.lastId)) {
    for (const li of list.children) {
      if (Number(li.dataset.id) > m.id) { before = li; break; }
    }
  }
  list.insertBefore(el, before);
  cur.msgs.set(m.id, { m, el });
  if (cur.firstId == null || m.id < cur.firstId) cur.firstId = m.id;
  if (cur.lastId == null || m.id > cur.lastId) cur.lastId = m.id;
  return true;
}

function setRead(entry) {
  entry.m.is_read = true;
  const t = entry.el.querySelector('.tick');
  if (t) {
    t.textContent = '✓✓';
    t.title = 'Read';
    t.classList.add('read');
  }
}

function nearBottom() {
  const box = $('#messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  const box = $('#messages');
  box.scrollTop = box.scrollHeight;
  stick = true;
}

async function loadOlder() {
  if (!cur || cur.loading || !cur.hasMore || cur.firstId == null) return;
  const mine = cur;
  cur.loading = true;
  const box = $('#messages');
  const btn = $('#load-older');
  btn.textContent = 'Loading…';
  try {
    const data = await api('messages/', { query: { other_username: cur.other, limit: PAGE, before_id: cur.firstId } });
    if (cur !== mine) return;
    const fromBottom = box.scrollHeight - box.scrollTop;
    for (const m of data.messages) addMessage(m, false);
    cur.hasMore = data.has_more;
    box.scrollTop = box.scrollHeight - fromBottom;
  } catch (e) {
    $('#send-error').textContent = e.message;
  } finally {
    mine.loading = false;
    btn.textContent = 'Load older messages';
    btn.hidden = !mine.hasMore;
  }
}

// Merges the newest page into the open thread (after a reconnect, or while polling).
async function refreshThread() {
  if (!cur || cur.loading) return;
  const mine = cur;
  try {
    const data = await api('messages/', { query: { other_username: cur.other, limit: PAGE } });
    if (cur !== mine) return;
    const stick = nearBottom();
    let added = false;
    for (const m of data.messages) added = addMessage(m) || added;
    if (added && stick) scrollToBottom();
  } catch (e) {
    /* shown by the banner */
  }
}

function markRead() {
  if (!cur || cur.cid == null || document.hidden) return;
  const c = convs.get(cur.other);
  if (c) c.unread_count = 0;
  api('mark-as-read/', { method: 'POST', body: { conversation_id: cur.cid } }).catch(() => {});
}

// ---- composer ----

function composerChanged() {
  const text = $('#composer-input').value;
  $('#send-btn').disabled = text.trim() === '';
  sendTyping();
}

// Tells the other side we are typing, at most every TYPING_SEND_MS (the server drops
// closer ones); a keystroke inside that window is sent when it ends.
let typingTimer = null;
function sendTyping() {
  if (!cur || cur.cid == null || !$('#composer-input').value.trim()) return;
  const wait = typingSentAt + TYPING_SEND_MS - Date.now();
  if (wait <= 0) {
    typingSentAt = Date.now();
    api('typing/', { method: 'POST', body: { conversation_id: cur.cid } }).catch(() => {});
  } else if (!typingTimer) {
    typingTimer = setTimeout(() => {
      typingTimer = null;
      sendTyping();
    }, wait);
  }
}

async function send(ev) {
  if (ev) ev.preventDefault();
  const input = $('#composer-input');
  const content = input.value.trim();
  if (!cur || !content || $('#send-btn').dataset.busy) return;
  const mine = cur;
  $('#send-btn').dataset.busy = '1';
  $('#send-btn').disabled = true;
  $('#send-error').textContent = '';
  try {
    const data = await api('send-message/', { method: 'POST', body: { receiver: cur.other, content } });
    input.value = '';
    const m = { ...data.message, is_mine: true };
    if (cur === mine) {
      if (addMessage(m)) scrollToBottom();
    }
    noteInList(m, cur.other);
  } catch (e) {
    $('#send-error').textContent = e.message;
  } finally {
    delete $('#send-btn').dataset.busy;
    $('#send-btn').disabled = input.value.trim() === '';
    input.focus();
  }
}

// Updates the list entry for a message; false when the conversation is not known yet.
function noteInList(m, other) {
  const c = convs.get(other);
  if (!c) {
    refreshConversations();
    return false;
  }
  c.last_message = { content: m.content, created_at: m.created_at, sender: m.sender };
  c.updated_at = m.created_at;
  renderList();
  return true;
}

// ---- live events ----

function onMessage(m) {
  const other = m.is_mine ? m.receiver : m.sender;
  const open = cur && cur.other === other;
  if (open) {
    if (cur.cid == null) cur.cid = m.conversation_id;
    const stick = m.is_mine || nearBottom();
    if (addMessage(m) && stick) scrollToBottom();
    if (!m.is_mine) markRead();
  }
  if (!m.is_mine) stopTyping(m.conversation_id);
  const c = convs.get(other);
  if (c && !m.is_mine && (!open || document.hidden)) c.unread_count += 1;
  noteInList(m, other);
}

function onRead(d) {
  if (!cur || cur.cid !== d.conversation_id) return;
  for (const entry of cur.msgs.values()) {
    if (entry.m.is_mine && !entry.m.is_read && entry.m.id <= d.up_to_id) setRead(entry);
  }
}

function onTyping(d) {
  clearTimeout(typingUntil.get(d.conversation_id));
  typingUntil.set(d.conversation_id, setTimeout(() => stopTyping(d.conversation_id), TYPING_SHOW_MS));
  if (cur && cur.cid === d.conversation_id) $('#typing').textContent = `${d.username} is typing…`;
  renderList();
}

function stopTyping(cid) {
  clearTimeout(typingUntil.get(cid));
  if (!typingUntil.delete(cid)) return;
  if (cur && cur.cid === cid) $('#typing').textContent = '';
  renderList();
}

function onPresence(d) {
  const c = convs.get(d.username);
  if (!c) return;
  c.other_user.is_online = d.is_online;
  renderList();
  updateThreadDot();
}

function poll() {
  refreshConversations();
  refreshThread();
}

function resync() {
  refreshConversations();
  refreshThread();
}

// ---- wiring (once) ----

function wire() {
  if (wired) return;
  wired = true;
  $('#new-chat').addEventListener('click', () => togglePicker());
  $('#user-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchUsers, 200);
  });
  $('#user-search').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { togglePicker(false); $('#new-chat').focus(); }
  });
  $('#back').addEventListener('click', () => {
    const who = cur && cur.other;
    closeThread();
    renderList();
    const btn = who && document.querySelector(`.conv[data-user="${CSS.escape(who)}"]`);
    if (btn) btn.focus();
  });
  $('#load-older').addEventListener('click', loadOlder);
  $('#messages').addEventListener('scroll', () => {
    stick = nearBottom();
    if ($('#messages').scrollTop < 60) loadOlder();
  });
  // Keep the newest message in view when the window (or phone keyboard) resizes.
  window.addEventListener('resize', () => {
    if (cur && stick) scrollToBottom();
  });
  const input = $('#composer-input');
  input.addEventListener('input', composerChanged);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) send(e);
  });
  $('#composer').addEventListener('submit', send);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && cur && convs.get(cur.other)?.unread_count) {
      markRead();
      renderList();
    }
  });
}
