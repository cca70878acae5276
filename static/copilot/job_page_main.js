/*
 * The job page's entry point: templates/copilot/job_detail.html loads it as
 * <script type="module">. The only module of static/copilot/ that acts when it is imported:
 * once the document is parsed it starts the page's live part (job_page.js, which loads the
 * stream's modules when the page follows a stream) and draws the agent diagram (agent_diagram.js,
 * loaded only when the page has one).
 */
import { start } from "./job_page.js";

function main(win) {
  const doc = win.document;
  start(win);
  if (doc.querySelector("[data-agent-diagram]")) {
    import("./agent_diagram.js").then(({ drawAll }) => drawAll(doc));
  }
}

// A module script runs once the document is parsed ("interactive"); an `async` one may run sooner.
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => main(window));
} else {
  main(window);
}
