// events.js: the live connection. One EventSource on /api/events/; when it drops, reconnect
// with backoff (resuming after the last message id) and poll while it is down. No polling
// while the stream is up.
import { $ } from './dom.js';

const POLL_MS = 4000;
const MAX_BACKOFF_MS = 30000;

export class Live {
  // handlers: {message, read, typing, presence, poll, resync}
  constructor(handlers) {
    this.h = handlers;
    this.es = null;
    this.lastId = null;
    this.delay = 1000;
    this.pollTimer = null;
    this.retryTimer = null;
    this.stopped = true;
    this.up = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.es) this.es.close();
    this.es = null;
    clearTimeout(this.retryTimer);
    this.stopPolling();
    this.setUp(false, 'Offline');
  }

  connect() {
    if (this.stopped) return;
    const url = '/api/events/' + (this.lastId ? '?last_event_id=' + encodeURIComponent(this.lastId) : '');
    const es = new EventSource(url, { withCredentials: true });
    this.es = es;
    es.onopen = () => {
      if (this.es !== es) return;
      this.delay = 1000;
      this.setUp(true);
      this.stopPolling();
      this.h.resync();
    };
    es.onerror = () => {
      if (this.es !== es) return;
      // Take over from the browser's own retry so we control backoff and polling.
      es.close();
      this.es = null;
      this.setUp(false);
      this.startPolling();
      const wait = this.delay * (0.75 + Math.random() / 2);
      this.delay = Math.min(this.delay * 2, MAX_BACKOFF_MS);
      this.retryTimer = setTimeout(() => this.connect(), wait);
    };
    // Too far behind to replay what was missed: start from the newest id and reload.
    es.addEventListener('resync', (ev) => {
      if (this.es !== es) return;
      if (ev.lastEventId) this.lastId = ev.lastEventId;
      this.h.resync();
    });
    for (const name of ['message', 'read', 'typing', 'presence']) {
      es.addEventListener(name, (ev) => {
        if (this.es !== es) return;
        if (ev.lastEventId) this.lastId = ev.lastEventId;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        this.h[name](data);
      });
    }
  }

  setUp(up, label) {
    this.up = up;
    const el = $('#live-status');
    if (!el) return;
    el.dataset.state = up ? 'up' : 'down';
    el.textContent = label || (up ? 'Live' : 'Reconnecting…');
  }

  startPolling() {
    if (this.pollTimer || this.stopped) return;
    this.pollTimer = setInterval(() => {
      if (!this.up) this.h.poll();
    }, POLL_MS);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }
}
