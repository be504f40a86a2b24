// The demo Lectio page: who is signed in, the language, and the widget started for them
// (served at /demo/demo.js; the page's Content-Security-Policy runs no inline script).
(function () {
  'use strict';

  const USER_KEY = 'lectio-demo:user';
  const LANG_KEY = 'lectio-demo:lang';
  const API = location.origin + '/api/concierge';
  const ROLE_NAMES = { admin: 'администратор', user: 'пользователь' };

  const select = document.getElementById('login-as');
  const who = document.getElementById('who');
  const usersError = document.getElementById('users-error');
  const langButtons = Array.from(document.querySelectorAll('[data-lang-choice]'));
  let users = [];

  function read(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  }

  function write(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      // The choice lasts for this page only.
    }
  }

  function currentUser() {
    return users.find((user) => user.sub === select.value) || null;
  }

  function currentLang() {
    return read(LANG_KEY) === 'en' ? 'en' : 'ru';
  }

  function startWidget() {
    const user = currentUser();
    window.LectioConcierge.destroy();
    window.LectioConcierge.init({ api: API, token: user ? user.token : '', lang: currentLang() });
  }

  function showUser() {
    const user = currentUser();
    who.textContent = user
      ? `Вы вошли как ${user.name}${user.about ? ` — ${user.about}` : ''}.`
      : 'Вы не вошли: чат откроется для гостя.';
  }

  function showLang() {
    const lang = currentLang();
    langButtons.forEach((button) => {
      button.setAttribute('aria-pressed', String(button.dataset.langChoice === lang));
    });
  }

  function fillUsers(list) {
    users = list.filter((user) => user && typeof user.sub === 'string' && typeof user.token === 'string');
    users.forEach((user) => {
      const role = ROLE_NAMES[user.role] || user.role;
      select.append(new Option(role ? `${user.name} (${role})` : user.name, user.sub));
    });
    const saved = read(USER_KEY);
    select.value = users.some((user) => user.sub === saved) ? saved : '';
  }

  async function loadUsers() {
    const response = await fetch('/demo/users', { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(`GET /demo/users: HTTP ${response.status}`);
    const list = await response.json();
    if (!Array.isArray(list)) throw new Error('GET /demo/users: not a list');
    return list;
  }

  select.addEventListener('change', () => {
    write(USER_KEY, select.value);
    showUser();
    startWidget();
  });

  langButtons.forEach((button) => {
    button.addEventListener('click', () => {
      write(LANG_KEY, button.dataset.langChoice);
      showLang();
      startWidget();
    });
  });

  showLang();
  loadUsers()
    .then(fillUsers, () => {
      usersError.hidden = false;
    })
    .finally(() => {
      showUser();
      startWidget();
    });
})();
