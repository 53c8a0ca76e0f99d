// Entry point of the web console: session, layout (left nav, header with
// tenant switcher and user menu), History-API routing under /ui/ and the
// login page. Pages live in ./pages/*.js and export render(ctx).

import { api, tenantApi, setUnauthenticatedHandler } from './api.js';
import { h, mount, loading, errorBox, empty, formError, showFormError, field } from './dom.js';

const ROLE_RANK = { viewer: 0, auditor: 1, admin: 2 };
const TENANT_KEY = 'vigil.tenant';

const ICONS = {
  dashboard: 'M3 13h8V3H3v10zm0 8h8v-6H3v6zm10 0h8V11h-8v10zm0-18v6h8V3h-8z',
  search: 'M15.5 14h-.8l-.3-.3A6.5 6.5 0 1 0 14 15.5l.3.3v.8l5 5 1.5-1.5-5-5zm-6 0a4.5 4.5 0 1 1 0-9 4.5 4.5 0 0 1 0 9z',
  agents: 'M4 6h16v10H4zM2 18h20v2H2zM6 8v6h12V8z',
  schedules: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 10.4 3.5 2.1-.8 1.3L11 13V7h2z',
  incidents: 'M1 21h22L12 2 1 21zm12-3h-2v-2h2v2zm0-4h-2v-4h2v4z',
  reports: 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8l-6-6zm-1 7V3.5L18.5 9H13zM8 13h8v2H8zm0 4h8v2H8z',
  alerts: 'M12 22a2 2 0 0 0 2-2h-4a2 2 0 0 0 2 2zm6-6V11a6 6 0 0 0-5-5.9V4h-2v1.1A6 6 0 0 0 6 11v5l-2 2v1h16v-1l-2-2z',
};

const NAV = [
  { id: 'dashboard', label: 'Dashboard', href: '/ui/dashboard' },
  { id: 'search', label: 'Findings', href: '/ui/search' },
  { id: 'agents', label: 'Agents', href: '/ui/agents' },
  { id: 'schedules', label: 'Schedules', href: '/ui/schedules' },
  { id: 'incidents', label: 'Incidents', href: '/ui/incidents' },
  { id: 'reports', label: 'Reports', href: '/ui/reports' },
  { id: 'alerts', label: 'Alerts', href: '/ui/alerts' },
];

const ROUTES = [
  { re: /^\/ui\/dashboard$/, page: 'dashboard', nav: 'dashboard', title: 'Dashboard' },
  { re: /^\/ui\/search$/, page: 'search', nav: 'search', title: 'Findings' },
  { re: /^\/ui\/findings\/([^/]+)$/, page: 'finding', nav: 'search', title: 'Finding', scoped: true },
  { re: /^\/ui\/asset\/(.+)$/, page: 'asset', nav: 'search', title: 'Asset', scoped: true },
  { re: /^\/ui\/agents$/, page: 'agents', nav: 'agents', title: 'Agents' },
  { re: /^\/ui\/schedules$/, page: 'schedules', nav: 'schedules', title: 'Schedules' },
  { re: /^\/ui\/incidents$/, page: 'incidents', nav: 'incidents', title: 'Incidents' },
  { re: /^\/ui\/reports$/, page: 'reports', nav: 'reports', title: 'Reports' },
  { re: /^\/ui\/alerts$/, page: 'alerts', nav: 'alerts', title: 'Alerts' },
];

const root = document.getElementById('app');
let session = null; // { user, tenants: [{tenant, role}], tenant, role }
let renderSeq = 0;
let leaveHooks = [];

function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', ICONS[name] || '');
  svg.append(p);
  return svg;
}

function chooseTenant(tenants) {
  const saved = localStorage.getItem(TENANT_KEY);
  const m = tenants.find((t) => t.tenant === saved) || tenants[0];
  return m || null;
}

function setSession(me) {
  const m = chooseTenant(me.tenants || []);
  session = {
    user: me.user || (me.api_key ? { email: me.api_key.name } : { email: 'unknown' }),
    tenants: me.tenants || [],
    tenant: m ? m.tenant : null,
    role: m ? m.role : null,
  };
}

/** Navigates within the app (pushState) and renders. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

function runLeaveHooks() {
  for (const f of leaveHooks) {
    try { f(); } catch { /* a page's cleanup must not block navigation */ }
  }
  leaveHooks = [];
}

function loginPage(next) {
  runLeaveHooks();
  document.title = 'Sign in · vigil';
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const err = formError();
  err.id = 'login-error';
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'login-form', 'aria-label': 'Sign in', novalidate: false },
    field('Email', email), field('Password', password), err, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(err, null);
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const me = await api.login(email.value.trim(), password.value);
      setSession(me);
      const target = next && next.startsWith('/ui/') && !next.startsWith('/ui/login') ? next : '/ui/dashboard';
      navigate(target, { replace: true });
    } catch (ex) {
      if (ex.status === 429) {
        const wait = ex.retryAfter ? ` Try again in ${Math.ceil(ex.retryAfter / 60)} min.` : '';
        showFormError(err, `Too many failed sign-in attempts.${wait}`);
      } else if (ex.status === 401) {
        showFormError(err, 'Wrong email or password.');
      } else {
        showFormError(err, ex);
      }
      password.value = '';
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  mount(root, h('div', { class: 'login-screen' },
    h('div', { class: 'login-card' },
      h('div', { class: 'brand brand-large' }, h('img', { src: '/ui/assets/favicon.svg', alt: '', width: 36, height: 36 }), h('span', {}, 'vigil')),
      h('p', { class: 'subtitle' }, 'Security compliance console'),
      form)));
  email.focus();
}

async function logout() {
  try { await api.logout(); } catch { /* the session may already be gone */ }
  session = null;
  navigate('/ui/login', { replace: true });
}

function shell(activeNav) {
  const roleOf = (t) => t.role;
  const select = h('select', { id: 'tenant-select', 'aria-label': 'Tenant' },
    session.tenants.map((t) => h('option', { value: t.tenant, selected: t.tenant === session.tenant }, `${t.tenant} · ${roleOf(t)}`)));
  select.addEventListener('change', () => {
    const m = session.tenants.find((t) => t.tenant === select.value);
    if (!m) return;
    session.tenant = m.tenant;
    session.role = m.role;
    localStorage.setItem(TENANT_KEY, m.tenant);
    // Detail pages name records of the previous tenant; go to its overview instead.
    const r = ROUTES.find((x) => x.re.test(location.pathname));
    if (!r || r.scoped) navigate('/ui/dashboard');
    else route();
  });
  const menu = h('details', { class: 'user-menu' },
    h('summary', { 'aria-label': 'User menu' },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }, (session.user.email || '?').slice(0, 1).toUpperCase()),
      h('span', { class: 'user-email' }, session.user.email)),
    h('div', { class: 'menu', role: 'menu' },
      h('div', { class: 'menu-info' },
        h('div', { class: 'muted small' }, 'Signed in as'),
        h('div', {}, session.user.email),
        h('div', { class: 'muted small', id: 'current-role' }, `Role in ${session.tenant}: ${session.role}`)),
      h('button', { class: 'menu-item', type: 'button', role: 'menuitem', id: 'logout', onclick: logout }, 'Sign out')));
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' },
    h('ul', {}, NAV.map((n) => h('li', {},
      h('a', { href: n.href, class: n.id === activeNav ? 'active' : null, 'aria-current': n.id === activeNav ? 'page' : null },
        icon(n.id), h('span', {}, n.label))))));
  const main = h('main', { id: 'main', tabindex: '-1' });
  mount(root, h('div', { class: 'shell' },
    h('aside', { class: 'sidebar' },
      h('a', { class: 'brand', href: '/ui/dashboard' }, h('img', { src: '/ui/assets/favicon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'vigil')),
      nav,
      h('div', { class: 'sidebar-foot muted small' }, 'vigil console · API v1')),
    h('div', { class: 'main-col' },
      h('header', { class: 'topbar' },
        h('div', { class: 'tenant-switch' }, h('label', { for: 'tenant-select' }, 'Tenant'), select),
        h('div', { class: 'topbar-spacer' }),
        h('span', { class: `role-chip role-${session.role}`, title: 'Your role in this tenant' }, session.role),
        menu),
      main)));
  return main;
}

async function route() {
  const seq = ++renderSeq;
  runLeaveHooks();
  const path = location.pathname;
  if (path === '/ui/login') {
    if (session) return navigate('/ui/dashboard', { replace: true });
    return loginPage(new URLSearchParams(location.search).get('next'));
  }
  if (!session) {
    try {
      setSession(await api.me());
    } catch (e) {
      if (e.status === 401) {
        const next = path.startsWith('/ui/') ? path + location.search : '';
        history.replaceState(null, '', '/ui/login' + (next ? `?next=${encodeURIComponent(next)}` : ''));
        return loginPage(next);
      }
      mount(root, h('div', { class: 'boot' }, errorBox(e, 'your session')));
      return;
    }
  }
  if (path === '/' || path === '/ui' || path === '/ui/') return navigate('/ui/dashboard', { replace: true });
  const r = ROUTES.find((x) => x.re.test(path));
  const main = shell(r ? r.nav : null);
  if (!session.tenant) {
    mount(main, empty('You are not a member of any tenant', 'Ask an administrator to add you to a tenant.'));
    return;
  }
  if (!r) {
    document.title = 'Not found · vigil';
    mount(main, empty('Page not found', `There is no page at ${path}.`));
    return;
  }
  document.title = `${r.title} · ${session.tenant} · vigil`;
  mount(main, loading());
  const params = path.match(r.re).slice(1).map(decodeURIComponent);
  const ctx = {
    main,
    api: tenantApi(session.tenant),
    tenant: session.tenant,
    role: session.role,
    can: (min) => ROLE_RANK[session.role] >= ROLE_RANK[min],
    params,
    query: new URLSearchParams(location.search),
    navigate,
    alive: () => seq === renderSeq,
    onLeave: (f) => leaveHooks.push(f),
  };
  try {
    const mod = await import(`./pages/${r.page}.js`);
    if (seq !== renderSeq) return;
    await mod.render(ctx);
  } catch (e) {
    if (seq === renderSeq) mount(main, errorBox(e, r.title.toLowerCase()));
  }
}

setUnauthenticatedHandler(() => {
  if (!session) return;
  session = null;
  const next = location.pathname + location.search;
  navigate(`/ui/login?next=${encodeURIComponent(next)}`, { replace: true });
});

// Same-origin /ui/ links navigate in place; downloads and new-tab clicks do not.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a');
  if (!a || a.hasAttribute('download') || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/') || url.pathname.startsWith('/ui/assets/')) return;
  e.preventDefault();
  document.querySelectorAll('details.user-menu[open]').forEach((d) => d.removeAttribute('open'));
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', route);

route();
