// mammokit viewer: plain JS, no build step. Every /api call carries the bearer token, which comes
// from the page address (#token=...), the session, or the form; it never leaves this origin.
"use strict";
(function () {
  const VIEWS = ["R-CC", "L-CC", "R-MLO", "L-MLO"];
  const state = { token: null, study: null, cells: {}, zoom: 1, panX: 0, panY: 0, drawn: 0, overlays: 0 };
  window.mammokit = state;  // for scripted checks (tests) and the console

  const $ = (id) => document.getElementById(id);
  const fmt = (p) => (p === null || p === undefined ? "–" : p.toFixed(3));

  async function api(path, asBlob) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
    if (r.status === 401) { showLogin("wrong or missing token"); throw new Error("401"); }
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return asBlob ? r.blob() : r.json();
  }

  async function bitmap(path) {
    try { return await createImageBitmap(await api(path, true)); } catch (e) { return null; }
  }

  function showLogin(message) {
    $("app").hidden = true; $("login").hidden = false; $("login-error").textContent = message || "";
  }

  async function start(token) {
    state.token = token; sessionStorage.setItem("mammokit-token", token);
    $("login").hidden = true; $("app").hidden = false;
    await loadStudies();
  }

  async function loadStudies() {
    const data = await api("/api/studies");
    const body = $("studies").querySelector("tbody");
    body.innerHTML = "";
    for (const s of data.studies) {
      const tr = document.createElement("tr");
      tr.className = "study"; tr.dataset.uid = s.study_uid;
      const p = s.probabilities || {};
      const cells = ["…" + s.study_uid.slice(-12), s.status + (s.reason ? ": " + s.reason : ""),
                     fmt(p.right_malignant), fmt(p.left_malignant)];
      cells.forEach((text, i) => { const td = document.createElement("td"); td.textContent = text;
        if (i === 1) td.className = "status-" + s.status; tr.appendChild(td); });
      tr.title = s.study_uid;
      tr.addEventListener("click", () => openStudy(s.study_uid));
      body.appendChild(tr);
    }
  }

  async function openStudy(uid) {
    document.querySelectorAll("#studies tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.uid === uid));
    const s = await api("/api/studies/" + encodeURIComponent(uid));
    state.study = s; state.zoom = 1; state.panX = state.panY = 0; state.drawn = 0; state.overlays = 0;
    const windows = (s.result && s.result.windows) || {};
    showScores(s);
    await Promise.all(VIEWS.map(async (view) => {
      const base = "/api/studies/" + encodeURIComponent(uid);
      const [img, mal, ben] = await Promise.all([
        bitmap(base + "/images/" + view + ".png"),
        bitmap(base + "/heatmaps/" + view + ".png?kind=malignant"),
        bitmap(base + "/heatmaps/" + view + ".png?kind=benign"),
      ]);
      state.cells[view] = { img, overlays: { malignant: mal, benign: ben }, window: windows[view] || null,
                            dicomWindow: windows[view] || null };
    }));
    showWindow();
    drawAll();
  }

  function showScores(s) {
    const p = s.probabilities || {};
    const d = $("scores");
    d.innerHTML = "";
    for (const [side, name] of [["right", "Right breast"], ["left", "Left breast"]]) {
      const div = document.createElement("div");
      div.className = "breast"; div.dataset.side = side;
      div.innerHTML = name + ": malignant <b class='p-malignant'></b> &middot; benign <b class='p-benign'></b>";
      div.querySelector(".p-malignant").textContent = fmt(p[side + "_malignant"]);
      div.querySelector(".p-benign").textContent = fmt(p[side + "_benign"]);
      d.appendChild(div);
    }
    const rej = (s.rejected || []).map((r) => (r.view || "?") + ": " + r.reason);
    $("details").textContent = "status " + s.status + (s.reason ? " (" + s.reason + ")" : "") +
      " · views used: " + ((s.views_used || []).join(", ") || "none") +
      (rej.length ? " · not used: " + rej.join("; ") : "") +
      (s.export ? " · export: " + s.export.status + (s.export.reason ? " (" + s.export.reason + ")" : "") : "") +
      (s.result && s.result.model ? " · model " + s.result.model.name + " " + s.result.model.version : "");
  }

  function showWindow() {
    const parts = VIEWS.filter((v) => state.cells[v] && state.cells[v].window)
      .map((v) => v + " W " + Math.round(state.cells[v].window.width) + " L " + Math.round(state.cells[v].window.center));
    $("wl").textContent = parts.join("  ");
  }

  function drawAll() { VIEWS.forEach(draw); }

  function draw(view) {
    const canvas = document.querySelector("canvas[data-view='" + view + "']");
    const cell = state.cells[view];
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
    canvas.dataset.drawn = "0"; canvas.dataset.overlay = "0";
    if (!cell || !cell.img) return;
    const fit = Math.min(w / cell.img.width, h / cell.img.height) * state.zoom;
    const dw = cell.img.width * fit, dh = cell.img.height * fit;
    // Mirrored layout: right breasts to the right edge of their cell, left breasts to the left,
    // so the two breasts meet in the middle, chest walls back to back.
    const x0 = (view.startsWith("R") ? w - dw : 0) + state.panX, y0 = (h - dh) / 2 + state.panY;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(cell.img, x0, y0, dw, dh);
    canvas.dataset.drawn = "1";
    const opacity = $("opacity").value / 100;
    let n = 0;
    for (const kind of ["benign", "malignant"]) {
      const ov = cell.overlays[kind];
      if (ov && $("show-" + kind).checked && opacity > 0) {
        ctx.globalAlpha = opacity; ctx.drawImage(ov, x0, y0, dw, dh); ctx.globalAlpha = 1; n++;
      }
    }
    canvas.dataset.overlay = String(n);
    state.drawn = document.querySelectorAll("canvas[data-drawn='1']").length;
    state.overlays = document.querySelectorAll("canvas[data-overlay]:not([data-overlay='0'])").length;
  }

  let wlTimer = null;
  function setWindow(dc, dw) {
    for (const v of VIEWS) {
      const c = state.cells[v];
      if (!c || !c.window) continue;
      c.window = { center: c.window.center + dc, width: Math.max(1, c.window.width + dw) };
    }
    showWindow();
    clearTimeout(wlTimer);
    wlTimer = setTimeout(reloadImages, 150);
  }

  async function reloadImages(useDicom) {
    if (!state.study) return;
    const base = "/api/studies/" + encodeURIComponent(state.study.study_uid) + "/images/";
    await Promise.all(VIEWS.map(async (v) => {
      const c = state.cells[v];
      if (!c || !c.window) return;
      const q = useDicom ? "" : "?wc=" + c.window.center.toFixed(2) + "&ww=" + c.window.width.toFixed(2);
      const img = await bitmap(base + v + ".png" + q);
      if (img) c.img = img;
    }));
    drawAll();
  }

  function wire() {
    ["show-malignant", "show-benign", "opacity"].forEach((id) => $(id).addEventListener("input", drawAll));
    $("refresh").addEventListener("click", loadStudies);
    $("reset").addEventListener("click", () => {
      state.zoom = 1; state.panX = state.panY = 0;
      for (const v of VIEWS) if (state.cells[v]) state.cells[v].window = state.cells[v].dicomWindow;
      showWindow(); reloadImages(true);
    });
    window.addEventListener("resize", drawAll);
    $("login-form").addEventListener("submit", (e) => { e.preventDefault(); start($("token-input").value.trim()); });
    document.querySelectorAll("#grid canvas").forEach((canvas) => {
      canvas.addEventListener("contextmenu", (e) => e.preventDefault());
      canvas.addEventListener("wheel", (e) => {
        e.preventDefault(); state.zoom = Math.min(20, Math.max(0.2, state.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
        drawAll();
      }, { passive: false });
      let drag = null;
      canvas.addEventListener("mousedown", (e) => {
        drag = { x: e.clientX, y: e.clientY, wl: e.shiftKey || e.button === 2 };
      });
      window.addEventListener("mouseup", () => { drag = null; });
      window.addEventListener("mousemove", (e) => {
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.x = e.clientX; drag.y = e.clientY;
        if (drag.wl) setWindow(dy * 4, dx * 4); else { state.panX += dx; state.panY += dy; drawAll(); }
      });
    });
  }

  wire();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);
  const token = fromHash || sessionStorage.getItem("mammokit-token");
  if (token) start(token).catch(() => showLogin("could not load the studies")); else showLogin("");
})();
