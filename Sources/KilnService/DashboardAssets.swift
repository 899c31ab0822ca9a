/// The dashboard's style sheet and page script, inlined into every page so that a
/// page is one response and nothing is fetched from elsewhere.
enum DashboardAssets {
    static let style = """
        :root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; --accent: #0969da; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: #fff; }
        header.top { display: flex; align-items: center; gap: 18px; padding: 8px 20px; border-bottom: 1px solid var(--line); background: var(--panel); }
        header.top .brand { font-weight: 700; font-size: 17px; color: var(--fg); }
        header.top nav { display: flex; gap: 14px; }
        header.top .live { margin-left: auto; font-size: 12px; color: var(--muted); }
        main { padding: 14px 20px 40px; max-width: 1440px; margin: 0 auto; }
        h1 { font-size: 21px; margin: 2px 0 6px; }
        h2 { font-size: 16px; margin: 22px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
        a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
        code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
        .small { font-size: 12px; } .muted { color: var(--muted); }
        .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
        .title { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
        .badge { display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12px; font-weight: 600; border: 1px solid; line-height: 20px; }
        .badge.succeeded { color: #1a7f37; background: #dafbe1; border-color: #aceebb; }
        .badge.running { color: #0969da; background: #ddf4ff; border-color: #addcff; }
        .badge.failed { color: #d1242f; background: #ffebe9; border-color: #ffcecb; }
        .badge.queued { color: #59636e; background: #f6f8fa; border-color: #d1d9e0; }
        .badge.cancelled { color: #7d4e00; background: #fff8c5; border-color: #f0dc8c; }
        .progress { min-width: 150px; margin: 4px 0; }
        .progress .bar { height: 6px; max-width: 320px; background: #eaeef2; border-radius: 3px; overflow: hidden; margin-bottom: 3px; }
        .progress .bar > span { display: block; height: 100%; background: var(--accent); transition: width .3s; }
        .progress .bar.succeeded > span { background: #1f883d; } .progress .bar.failed > span { background: #cf222e; }
        .progress .bar.cancelled > span { background: #bf8700; }
        .progress .ptext { font-size: 12.5px; font-variant-numeric: tabular-nums; }
        table.data { border-collapse: collapse; width: 100%; }
        table.data th, table.data td { padding: 7px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
        table.data th { font-size: 12px; color: var(--muted); font-weight: 600; background: var(--panel); }
        table.data .num { text-align: right; font-variant-numeric: tabular-nums; }
        table.jobs tr:hover td { background: #f6f8fa; }
        td.select { width: 28px; } td.job .name { font-weight: 600; font-size: 14.5px; }
        td.links a { margin-right: 8px; white-space: nowrap; }
        .row-error { color: #d1242f; font-size: 12px; max-width: 260px; } .warn-count { color: #9a6700; }
        dl.metrics { display: grid; grid-template-columns: max-content max-content max-content max-content; gap: 0 10px; margin: 0; font-size: 12.5px; font-variant-numeric: tabular-nums; }
        dl.metrics dt { color: var(--muted); } dl.metrics dd { margin: 0; text-align: right; }
        dl.metrics.big { font-size: 14px; gap: 2px 16px; }
        dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 0; }
        dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; word-break: break-all; }
        .filters, .compare-bar, .cancel { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; }
        input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--fg); }
        input[type=search] { min-width: 220px; }
        button { cursor: pointer; } button:disabled { opacity: .5; cursor: default; }
        button.primary { background: #1f883d; color: #fff; border-color: #1a7f37; }
        button.danger { color: #d1242f; border-color: #d1242f; }
        .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 14px; }
        figure.chart { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px 6px; min-width: 0; }
        figure.chart figcaption { font-weight: 600; margin-bottom: 2px; }
        figure.chart svg { display: block; width: 100%; height: auto; font-family: inherit; }
        ul.legend { list-style: none; padding: 0; margin: 4px 0 0; display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; }
        ul.legend li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%; }
        figure.chart ul.legend svg { display: inline-block; width: 22px; height: 8px; vertical-align: middle; margin-right: 5px; }
        ul.warnings { background: #fff8c5; border: 1px solid #eac54f; border-radius: 6px; padding: 8px 12px 8px 28px; margin: 0; }
        ul.warnings li { margin: 3px 0; }
        .error { background: #ffebe9; border: 1px solid #ffcecb; border-radius: 6px; padding: 8px 12px; white-space: pre-wrap; word-break: break-word; }
        pre.spec { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow: auto; max-height: 520px; margin: 0; }
        .scroll { overflow-x: auto; }
        .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
        p.links { margin: 6px 0; }
        .mini svg { display: block; width: 200px; height: auto; }
        table.jobs td.links { min-width: 150px; }
        td.job .mono, td.job .small { white-space: nowrap; }
        .overview { display: grid; grid-template-columns: minmax(0, auto) minmax(0, 1fr); gap: 0 40px; align-items: start; }
        .overview > .wide { grid-column: 1 / -1; }
        ul.setup { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 5px 6px; }
        ul.setup li { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 1px 7px; font-size: 12.5px;
          font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; max-width: 100%; overflow-wrap: anywhere; }
        ul.setup li span { color: var(--muted); }
        @media (max-width: 760px) {
          header.top { padding: 8px 12px; }
          main { padding: 10px 12px 30px; }
          .charts { grid-template-columns: minmax(0, 1fr); }
          .overview { grid-template-columns: minmax(0, 1fr); }
          .overview > .warnings-block { order: 2; }
          .overview > .setup-block { order: 3; }
          input[type=search] { min-width: 0; flex: 1 1 100%; }
          table.cards thead { display: none; }
          table.cards, table.cards tbody { display: block; }
          table.cards tr { display: block; padding: 10px 0; border-bottom: 1px solid var(--line); }
          table.cards td { display: block; border: 0; padding: 2px 0; }
          table.cards td[data-label]::before { content: attr(data-label) " "; color: var(--muted); font-size: 12px; font-family: system-ui, sans-serif; }
          table.jobs tr { display: grid; grid-template-columns: 26px minmax(0, 1fr); gap: 4px 8px; }
          table.jobs td.select { grid-row: 1 / span 5; }
          table.jobs td:not(.select) { grid-column: 2; }
          table.jobs tr.empty { display: block; }
          table.diff td:first-child { min-width: 9em; overflow-wrap: anywhere; }
        }
        """

    /// Keeps a page current without reloading it: follows the event stream of each
    /// unfinished job shown (`data-follow`), moves progress bars on `progress` events
    /// and, when an epoch or the job ends, fetches the page again and swaps in its
    /// `data-live` sections. Also the list's filters and selection, and the cancel button.
    static let script = #"""
        (() => {
        "use strict";
        const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
        const page = document.body.dataset.page;
        const liveState = document.getElementById("live-state");

        function duration(s) {
          s = Math.max(0, Math.round(s));
          if (s < 60) return s + " s";
          if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
          return Math.floor(s / 3600) + " h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + " min";
        }

        const statusOf = el => el.querySelector(".badge")?.textContent;

        function showProgress(id, p) {
          if (!(p.steps > 0)) return;  // not started yet
          for (const el of $$(`[data-progress-for="${CSS.escape(id)}"]`)) {
            const epoch = Math.max(p.epoch, 1);
            const done = p.steps > 0 ? (Math.max(p.epoch - 1, 0) * p.steps + p.step) / (p.epochs * p.steps) : p.epoch / Math.max(p.epochs, 1);
            let text = `epoch ${epoch}/${p.epochs}`;
            if (p.steps > 0) text += ` · step ${p.step}/${p.steps}`;
            if (p.eta_seconds != null) text += ` · ETA ${duration(p.eta_seconds)}`;
            el.querySelector(".bar > span").style.width = (Math.min(Math.max(done, 0), 1) * 100).toFixed(1) + "%";
            el.querySelector(".ptext").textContent = text;
          }
        }

        // Re-render: fetch this page again and swap in its live sections.
        let busy = false, pending = false;
        async function refresh() {
          if (busy) { pending = true; return; }
          busy = true;
          try {
            const response = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
            if (response.ok) {
              const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
              const ticked = new Set($$("input[name=jobs]:checked").map(i => i.value));
              for (const section of $$("[data-live][id]", fresh)) {
                const current = document.getElementById(section.id);
                if (current) current.replaceWith(document.adoptNode(section));
              }
              for (const box of $$("input[name=jobs]")) box.checked = ticked.has(box.value);
              setUp();
            }
          } catch (e) { /* the next event tries again */ }
          busy = false;
          if (pending) { pending = false; setTimeout(refresh, 300); }
        }

        // One event stream per unfinished job on the page (a browser allows few connections per host).
        const streams = new Map();
        function follow() {
          // Running jobs first, then the next queued ones.
          const live = $$("[data-follow]").sort((a, b) => (statusOf(b) === "running") - (statusOf(a) === "running"));
          const wanted = [...new Set(live.map(e => e.dataset.follow))].slice(0, 4);
          for (const [id, source] of streams) if (!wanted.includes(id)) { source.close(); streams.delete(id); }
          for (const id of wanted) {
            if (streams.has(id)) continue;
            const source = new EventSource(`/jobs/${encodeURIComponent(id)}/metrics?follow=1`);
            const shownEpochs = () => Number(document.querySelector(`[data-follow="${CSS.escape(id)}"]`)?.dataset.epochs ?? 0);
            const shownStatus = () => document.querySelector(`[data-follow="${CSS.escape(id)}"] .badge`)?.textContent;
            source.addEventListener("progress", ev => {
              const p = JSON.parse(ev.data);
              if (shownStatus() === "queued" && (p.step > 0 || p.steps > 0)) refresh();
              showProgress(id, p);
            });
            source.addEventListener("epoch", ev => { if (JSON.parse(ev.data).epoch > shownEpochs()) refresh(); });
            source.addEventListener("end", () => { source.close(); streams.delete(id); refresh(); });
            streams.set(id, source);
          }
          if (liveState) liveState.textContent = streams.size ? `live: following ${streams.size} job${streams.size > 1 ? "s" : ""}` : "";
        }

        // The jobs list: filters as one types, and the comparison of ticked rows.
        function applyFilter() {
          const name = document.getElementById("filter-name"), status = document.getElementById("filter-status");
          if (!name || !status) return;
          const q = name.value.trim().toLowerCase(), s = status.value;
          let shown = 0, total = 0;
          for (const row of $$("#job-rows tr[data-id]")) {
            const visible = (!s || row.dataset.status === s) && (!q || row.dataset.name.includes(q) || row.dataset.id.includes(q));
            row.hidden = !visible;
            total++; if (visible) shown++;
          }
          const none = document.getElementById("no-match");
          if (none && total > 0) none.hidden = shown > 0;
          document.getElementById("filter-count").textContent = `${shown} of ${total} shown`;
        }
        function filterChanged() {
          applyFilter();
          const params = new URLSearchParams();
          const q = document.getElementById("filter-name").value.trim(), s = document.getElementById("filter-status").value;
          if (q) params.set("q", q);
          if (s) params.set("status", s);
          // Keep every job in the table (the filter hides rows) and remember the filter in the address.
          history.replaceState(null, "", params.toString() ? "/?" + params : "/");
        }
        function selectionChanged() {
          const button = document.getElementById("compare-button");
          if (button) button.disabled = $$("input[name=jobs]:checked").length < 2;
        }

        function setUp() {
          applyFilter();
          selectionChanged();
          follow();
        }

        if (page === "jobs") {
          document.getElementById("filter-name").addEventListener("input", filterChanged);
          document.getElementById("filter-status").addEventListener("change", filterChanged);
          document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); filterChanged(); });
          document.getElementById("compare-form").addEventListener("change", selectionChanged);
          document.getElementById("compare-form").addEventListener("submit", ev => {
            ev.preventDefault();
            const ids = $$("input[name=jobs]:checked").map(i => i.value);
            if (ids.length >= 2) location.href = "/compare?jobs=" + ids.map(encodeURIComponent).join(",");
          });
        }

        // Cancel, with the token from localStorage when the server needs one.
        document.addEventListener("click", async ev => {
          const button = ev.target.closest("#cancel");
          if (!button) return;
          const message = document.getElementById("cancel-message");
          const tokenField = document.getElementById("token");
          const token = tokenField ? tokenField.value.trim() : "";
          if (tokenField) localStorage.setItem("kiln-token", token);
          button.disabled = true;
          try {
            const response = await fetch(`/jobs/${encodeURIComponent(button.dataset.job)}`, {
              method: "DELETE", headers: token ? { Authorization: "Bearer " + token } : {} });
            const body = await response.json().catch(() => ({}));
            if (response.ok) { message.textContent = "cancelling…"; refresh(); }
            else {
              message.textContent = (body.error && body.error.message) || `failed (${response.status})`;
              if (response.status === 401 && tokenField) tokenField.focus();
              button.disabled = false;
            }
          } catch (e) { message.textContent = "the server did not answer"; button.disabled = false; }
        });
        document.addEventListener("input", ev => {
          if (ev.target.id === "token") localStorage.setItem("kiln-token", ev.target.value.trim());
        });
        function restoreToken() {
          const field = document.getElementById("token");
          if (field && !field.value) field.value = localStorage.getItem("kiln-token") || "";
        }
        restoreToken();
        new MutationObserver(restoreToken).observe(document.querySelector("main"), { childList: true, subtree: true });

        setUp();
        })();
        """#
}
