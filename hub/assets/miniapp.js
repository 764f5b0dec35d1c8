// The Tradecast Mini App: exchanges Telegram's initData for a session, then loads the views
// with htmx (the bearer token in the body's hx-headers, never a cookie), follows Telegram's
// theme, and drives the BackButton (back to the previous view) and the MainButton (the view's
// main action: the element marked data-main).
(function () {
  'use strict';
  var tg = window.Telegram && window.Telegram.WebApp;
  var view = document.getElementById('view');
  var tabs = document.getElementById('tabs');
  var token = null;
  var trail = [];
  var mainTarget = null;

  function say(text, isError) {
    var p = document.createElement('p');
    p.id = 'status';
    p.className = isError ? 'notice error' : 'hint';
    p.textContent = text;
    view.replaceChildren(p);
  }

  function scheme() {
    document.documentElement.classList.toggle('dark', tg.colorScheme === 'dark');
  }

  if (!tg || !tg.initData) {
    say('Open this page from the Tradecast bot in Telegram: it needs Telegram to sign you in.', true);
    return;
  }
  tg.ready();
  tg.expand();
  scheme();
  tg.onEvent('themeChanged', scheme);

  function csrf() {
    var v = view.querySelector('[data-csrf]');
    return v ? v.getAttribute('data-csrf') : '';
  }

  function show(name, remember) {
    if (remember !== false && trail[trail.length - 1] !== name) {
      trail.push(name);
    }
    Array.prototype.forEach.call(tabs.querySelectorAll('.tab'), function (t) {
      t.classList.toggle('on', t.getAttribute('data-view') === name.split('?')[0]);
    });
    current = name;
    if (name.indexOf('approvals') === 0) { refused = false; follow(); }
    if (trail.length > 1) { tg.BackButton.show(); } else { tg.BackButton.hide(); }
    htmx.ajax('GET', '/miniapp/app/' + name, { target: '#view', swap: 'innerHTML' });
  }

  tg.BackButton.onClick(function () {
    if (trail.length > 1) {
      trail.pop();
      show(trail[trail.length - 1], false);
    }
  });

  tg.MainButton.onClick(function () {
    if (mainTarget) { mainTarget.click(); }
  });

  function mainButton() {
    mainTarget = view.querySelector('[data-main]');
    if (mainTarget) {
      tg.MainButton.setParams({ text: mainTarget.getAttribute('data-main'), is_visible: true, is_active: true });
    } else {
      tg.MainButton.hide();
    }
  }

  // The view currently shown (with its query, e.g. one signal opened from a notification).
  var current = null;

  function act(button) {
    var action = button.getAttribute('data-action');
    if (action === 'open-link') {
      tg.openLink(new URL(button.getAttribute('data-url'), location.href).href);
      return;
    }
    if (action === 'view') {
      show(button.getAttribute('data-view'));
      return;
    }
    var body = new URLSearchParams();
    if (button.hasAttribute('data-plan')) { body.set('plan_id', button.getAttribute('data-plan')); }
    if (button.hasAttribute('data-kind')) { body.set('kind', button.getAttribute('data-kind')); }
    if (action === 'decide') {
      body.set('signal_id', button.getAttribute('data-signal'));
      body.set('device_id', button.getAttribute('data-device'));
      body.set('decision', button.getAttribute('data-decision'));
      var from = button.getAttribute('data-lots-from');
      if (from) {
        var input = document.getElementById(from);
        body.set('lots', input ? input.value : '');
      }
    }
    button.disabled = true;
    tg.MainButton.showProgress(false);
    fetch('/miniapp/app/' + action, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + token, 'X-CSRF-Token': csrf() },
      body: body
    }).then(function (r) {
      return r.json().then(function (b) { return { ok: r.ok, body: b }; });
    }).then(function (res) {
      if (!res.ok) { throw new Error(res.body.detail || 'refused'); }
      if (res.body.kind === 'decided') {
        // The node's answer is shown by the view, which refreshes itself until it arrives.
        try { tg.HapticFeedback.notificationOccurred('success'); } catch (unsupported) { /* old client */ }
        show(current, false);
      } else if (res.body.kind === 'invoice') {
        try {
          tg.openInvoice(res.body.url, function (status) {
            if (status === 'paid') { show('plan', false); }
          });
        } catch (e) {
          // A client too old for invoices (before 6.1): the link opens the invoice in Telegram.
          tg.openLink(res.body.url);
        }
      } else if (res.body.kind === 'share') {
        // Telegram's share sheet, with the link (an address on this hub, made absolute).
        var link = new URL(res.body.url, location.href).href;
        tg.openTelegramLink('https://t.me/share/url?url=' + encodeURIComponent(link) +
          '&text=' + encodeURIComponent('My trading record, verified by Tradecast'));
      } else if (res.body.kind === 'download') {
        // Telegram downloads the file itself (Bot API 8.0); an older client opens the link.
        var url = new URL(res.body.url, location.href).href;
        try { tg.downloadFile({ url: url, file_name: res.body.file_name }); } catch (old) { tg.openLink(url); }
      } else {
        tg.openLink(res.body.url);
      }
    }).catch(function (e) {
      var words = String(e.message || e);
      try { tg.showAlert(words); } catch (unsupported) { say(words, true); }
    }).finally(function () {
      button.disabled = false;
      tg.MainButton.hideProgress();
    });
  }

  document.addEventListener('click', function (ev) {
    var tab = ev.target.closest('.tab, [data-view-link]');
    if (tab) { show(tab.getAttribute('data-view') || tab.getAttribute('data-view-link')); return; }
    var button = ev.target.closest('[data-action]');
    if (button && !button.disabled) { act(button); }
  });

  document.body.addEventListener('htmx:afterSwap', mainButton);
  // A view the trader's plan does not include answers 402 with words and the plans that do:
  // shown like any view.
  document.body.addEventListener('htmx:beforeSwap', function (ev) {
    if (ev.detail.xhr.status === 402) { ev.detail.shouldSwap = true; ev.detail.isError = false; }
  });

  // Countdowns to a pending signal's expiry (the server's clock gave the first value).
  setInterval(function () {
    Array.prototype.forEach.call(view.querySelectorAll('[data-expires]'), function (el) {
      var left = Math.floor((Number(el.getAttribute('data-expires')) - Date.now()) / 1000);
      el.textContent = left <= 0 ? 'time is up'
        : left < 60 ? left + ' s left'
        : left < 3600 ? Math.floor(left / 60) + ' min ' + (left % 60) + ' s left'
        : Math.floor(left / 3600) + ' h ' + Math.floor((left % 3600) / 60) + ' min left';
    });
  }, 1000);
  document.body.addEventListener('htmx:responseError', function (ev) {
    var status = ev.detail.xhr.status;
    say(status === 401
      ? 'Your session has ended: close the app and open it again from the bot.'
      : 'The hub could not answer (' + status + '): try again.', true);
    tg.MainButton.hide();
  });

  // The Approvals view changes live: the hub's event stream says when something it shows
  // changed (a new signal waiting, the node's answer, an expiry). Read with fetch, which can
  // carry the bearer token (EventSource cannot); reconnected after a break; after a refusal
  // (no plan with the Mini App yet, an unlinked account) tried again when Approvals is opened.
  var following = false;
  var refused = false;
  function follow() {
    if (following || refused || !token) { return; }
    following = true;
    fetch('/miniapp/app/approvals/events', { headers: { 'Authorization': 'Bearer ' + token } })
      .then(function (r) {
        if (r.status >= 400 && r.status < 500) { refused = true; }
        if (!r.ok || !r.body) { throw new Error('no stream (' + r.status + ')'); }
        var reader = r.body.getReader();
        var decoder = new TextDecoder();
        var buffer = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { throw new Error('the stream ended'); }
            buffer += decoder.decode(chunk.value, { stream: true });
            var end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              var event = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              var typing = document.activeElement && document.activeElement.tagName === 'INPUT'
                && view.contains(document.activeElement);
              // Reloaded only when the view shown is older than the state the hub announces.
              var data = /^data: (.*)$/m.exec(event);
              var shown = view.querySelector('[data-live-state]');
              var stale = !shown || !data || shown.getAttribute('data-live-state') !== data[1];
              if (/^event: change$/m.test(event) && current && current.indexOf('approvals') === 0
                  && stale && !typing) {
                show(current, false);
              }
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function () { /* reconnected below unless refused */ })
      .then(function () {
        following = false;
        if (!refused) { setTimeout(follow, 3000); }
      });
  }

  fetch(document.body.getAttribute('data-session-url'), {
    method: 'POST',
    headers: { 'Authorization': 'tma ' + tg.initData }
  }).then(function (r) {
    return r.json().then(function (b) { return { ok: r.ok, body: b }; });
  }).then(function (res) {
    if (!res.ok) { throw new Error(res.body.detail || 'refused'); }
    token = res.body.token;
    document.body.setAttribute('hx-headers', JSON.stringify({ 'Authorization': 'Bearer ' + token }));
    tabs.hidden = false;
    follow();
    var start = tg.initDataUnsafe && tg.initDataUnsafe.start_param;
    var one = start && /^approve_[0-9a-f]{32}$/.test(start) ? start.slice(8) : null;
    show(one ? 'approvals?signal=' + one : 'plan');
  }).catch(function (e) {
    say('Telegram did not sign this session in (' + (e.message || e) + '): open the app again from the bot.', true);
  });
})();
