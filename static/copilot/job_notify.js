/*
 * "Notify me when it's done": the job page's button and the browser notification at a job's end.
 *
 * The browser's permission is asked only when the button is pressed, never on load. The choice
 * is remembered for this browser (localStorage), so every job page opened later notifies too.
 * A job page that sees its job end reloads itself to show the result (job_page.js): before it
 * does, rememberEnd() notes the end for this tab (sessionStorage), and the reloaded page,
 * through takeEnd(), says it in the live region and shows the notification (a notification made
 * by the page being left would lose its click handler). Clicking it focuses the job's tab.
 * Without Notification, or with it denied, the button says so and nothing else changes.
 *
 * A plain ES module with nothing run on import; buttonState is pure (tests/js).
 */
import { endNotice } from "./job_status_text.js";

const CHOICE_KEY = "copilot.notify";
const END_KEY = "copilot.ended.";

/** What the button shows: {text, pressed, disabled}. Pure. */
export function buttonState(supported, permission, chosen) {
  if (!supported) {
    return { text: "This browser cannot show notifications", pressed: false, disabled: true };
  }
  if (permission === "denied") {
    return { text: "Notifications are blocked for this site", pressed: false, disabled: true };
  }
  if (permission === "granted" && chosen) {
    return { text: "You will be notified when it's done", pressed: true, disabled: false };
  }
  return { text: "Notify me when it's done", pressed: false, disabled: false };
}

function storage(win, name) {
  try {
    return win[name] || null;
  } catch (err) {
    return null; // storage refused (privacy settings): remember nothing
  }
}

function read(win, name, key) {
  const store = storage(win, name);
  try {
    return store ? store.getItem(key) : null;
  } catch (err) {
    return null;
  }
}

function write(win, name, key, value) {
  const store = storage(win, name);
  try {
    if (store && value === null) store.removeItem(key);
    else if (store) store.setItem(key, value);
  } catch (err) {
    /* not remembered; nothing breaks */
  }
}

function supported(win) {
  return typeof win.Notification === "function";
}

function wanted(win) {
  return (
    supported(win) &&
    win.Notification.permission === "granted" &&
    read(win, "localStorage", CHOICE_KEY) === "on"
  );
}

/** Bind button[data-job-notify] (shown only here, so a page without script shows none). */
export function bindButton(win, button) {
  if (!button) return;
  function render() {
    const permission = supported(win) ? win.Notification.permission : "unsupported";
    const state = buttonState(supported(win), permission, read(win, "localStorage", CHOICE_KEY) === "on");
    button.textContent = state.text;
    button.disabled = state.disabled;
    button.setAttribute("aria-pressed", state.pressed ? "true" : "false");
  }
  button.addEventListener("click", () => {
    if (!supported(win)) return render();
    if (wanted(win)) {
      write(win, "localStorage", CHOICE_KEY, null); // pressed again: turn it off
      return render();
    }
    Promise.resolve(win.Notification.requestPermission()).then(
      (answer) => {
        if ((answer || win.Notification.permission) === "granted") {
          write(win, "localStorage", CHOICE_KEY, "on");
        }
        render();
      },
      () => render(),
    );
  });
  render();
  button.hidden = false;
}

/** Note, for this tab, that the job ended while its page was open (before the reload). */
export function rememberEnd(win, jobId, status) {
  write(win, "sessionStorage", END_KEY + jobId, status);
}

/** The end rememberEnd noted for this job, once (null when the page was simply opened). */
export function takeEnd(win, jobId) {
  const status = read(win, "sessionStorage", END_KEY + jobId);
  if (status !== null) write(win, "sessionStorage", END_KEY + jobId, null);
  return status;
}

/** Show the end notification when the user asked for them; returns it (or null). */
export function notifyEnd(win, jobId, status, jobName) {
  if (!wanted(win)) return null;
  const notice = endNotice(status, jobName);
  try {
    const notification = new win.Notification(notice.title, {
      body: notice.body,
      tag: "copilot-job-" + jobId,
    });
    notification.onclick = () => {
      win.focus();
      notification.close();
    };
    return notification;
  } catch (err) {
    return null; // e.g. a browser that only allows notifications from a service worker
  }
}
