// The Label page's grid (facelab/ui/grid.py, label_grid): a click or key shows its label at once
// here, then sends the change. What it sends is every change the server has not yet confirmed
// ("pending", each numbered), never a single click: Streamlit keeps only a widget's latest
// value, so quick clicks that share one rerun all arrive. The server applies the numbers it has
// not applied and sends back the last one it has (data.ack); until then a pending change is
// drawn over what the server says, so a rerun that started before a click never undoes it.
// Names typed by a person reach the page only through textContent, never as HTML.

const KEYS_NEXT = new Set(["PageDown", "n"]);
const KEYS_PREV = new Set(["PageUp", "p"]);

export default function (component) {
  const { data, setStateValue, parentElement } = component;
  if (!parentElement.__facelabGrid) parentElement.__facelabGrid = mount(parentElement, setStateValue);
  parentElement.__facelabGrid.update(data);
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function mount(root, setStateValue) {
  const mountId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let seq = 0;
  let pending = []; // {seq, label, ids, on} or {seq, page}
  let data = null;
  let anchor = null; // index of the last cell clicked or toggled: one end of a shift range
  let view = null;
  let focusIndex = 0;

  const box = el("div", "fl-label-grid", root);
  const pagers = [];
  const makePager = (where) => {
    const nav = el("nav", `pager ${where}`, where === "top" ? box : null);
    const prev = el("button", "prev", nav);
    prev.type = "button";
    prev.textContent = "◀ Previous";
    const info = el("span", "info", nav);
    const next = el("button", "next", nav);
    next.type = "button";
    next.textContent = "Next ▶";
    prev.addEventListener("click", () => goPage(-1));
    next.addEventListener("click", () => goPage(+1));
    pagers.push({ nav, prev, info, next });
    return nav;
  };
  makePager("top");
  const grid = el("div", "cells", box);
  grid.setAttribute("role", "group");
  box.appendChild(makePager("bottom"));
  const cells = [];

  const send = () => setStateValue("events", { mount: mountId, list: pending.slice() });
  const emit = (event) => {
    pending.push({ seq: ++seq, ...event });
    draw();
    send();
  };

  // What a cell shows: the server's state with this tab's unconfirmed changes on top.
  const shown = (i) => {
    const cell = data.cells[i];
    let on = cell.on;
    let waiting = false;
    for (const e of pending) {
      if (e.ids && e.label === data.label && e.ids.includes(cell.id)) {
        on = e.on;
        waiting = true;
      }
    }
    return { on, waiting };
  };
  const pagePending = () => pending.some((e) => e.page !== undefined);

  const toggle = (i, range) => {
    if (!data || i < 0 || i >= data.cells.length) return;
    const on = !shown(i).on;
    let ids = [data.cells[i].id];
    if (range && anchor !== null && anchor < data.cells.length) {
      const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
      ids = data.cells.slice(a, b + 1).map((c) => c.id);
    }
    anchor = i;
    emit({ label: data.label, ids, on });
  };

  const goPage = (step) => {
    if (!data || pagePending()) return;
    const page = data.page + step;
    if (page < 0 || page >= data.pages) return;
    emit({ page });
  };

  const focusCell = (i) => {
    if (!cells.length) return;
    focusIndex = Math.max(0, Math.min(cells.length - 1, i));
    cells[focusIndex].focus();
  };

  const columns = () => getComputedStyle(grid).gridTemplateColumns.split(" ").filter(Boolean).length || 1;

  grid.addEventListener("mousedown", (e) => {
    if (e.shiftKey) e.preventDefault(); // no text selection on shift-click
  });
  grid.addEventListener("click", (e) => {
    const cell = e.target.closest(".cell");
    if (!cell) return;
    const i = cells.indexOf(cell);
    focusIndex = i;
    cell.focus();
    toggle(i, e.shiftKey);
  });
  grid.addEventListener("focusin", (e) => {
    const i = cells.indexOf(e.target.closest(".cell"));
    if (i >= 0) focusIndex = i;
  });
  box.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const inCell = e.target.classList && e.target.classList.contains("cell");
    const i = inCell ? cells.indexOf(e.target) : focusIndex;
    let handled = true;
    if (inCell && (e.key === " " || e.key === "Enter")) toggle(i, e.shiftKey);
    else if (inCell && e.key === "ArrowRight") focusCell(i + 1);
    else if (inCell && e.key === "ArrowLeft") focusCell(i - 1);
    else if (inCell && e.key === "ArrowDown") focusCell(i + columns());
    else if (inCell && e.key === "ArrowUp") focusCell(i - columns());
    else if (inCell && e.key === "Home") focusCell(0);
    else if (inCell && e.key === "End") focusCell(cells.length - 1);
    else if (KEYS_NEXT.has(e.key)) goPage(+1);
    else if (KEYS_PREV.has(e.key)) goPage(-1);
    else handled = false;
    if (handled) {
      e.preventDefault(); // no page scroll on Space or PageDown, no click on a focused button
      e.stopPropagation(); // nor Streamlit's own keys
    }
  });

  const draw = () => {
    if (!data) return;
    const hadFocus = root.activeElement && root.activeElement.classList.contains("cell");
    while (cells.length < data.cells.length) {
      const cell = el("div", "cell", grid);
      cell.tabIndex = 0;
      cell.setAttribute("role", "checkbox");
      const img = el("img", "", cell);
      img.alt = "";
      img.draggable = false;
      el("span", "time", cell);
      el("span", "mark", cell);
      cells.push(cell);
    }
    while (cells.length > data.cells.length) cells.pop().remove();
    data.cells.forEach((c, i) => {
      const cell = cells[i];
      const { on, waiting } = shown(i);
      const img = cell.querySelector("img");
      if (img.getAttribute("src") !== c.src) img.setAttribute("src", c.src);
      cell.dataset.id = String(c.id);
      cell.querySelector(".time").textContent = c.caption;
      cell.querySelector(".mark").textContent = `${on ? "☑" : "☐"} ${data.label}`;
      cell.setAttribute("aria-checked", on ? "true" : "false");
      cell.setAttribute("aria-label", `${c.caption}: ${data.label} ${on ? "given" : "not given"}`);
      cell.classList.toggle("on", on);
      cell.classList.toggle("waiting", waiting);
    });
    const busy = pagePending();
    for (const p of pagers) {
      p.info.textContent = data.info;
      p.prev.disabled = data.page <= 0; // not while a page turns: a focused button would lose focus
      p.next.disabled = data.page >= data.pages - 1;
      p.nav.hidden = data.pages <= 1;
    }
    box.classList.toggle("turning", busy);
    box.dataset.pending = String(pending.length);
    if (hadFocus && cells.length && root.activeElement !== cells[focusIndex]) focusCell(focusIndex);
  };

  const update = (next) => {
    const ack = (next.ack && next.ack[mountId]) || 0;
    pending = pending.filter((e) => e.seq > ack);
    if (next.view !== view) anchor = null; // another label, filter or page: a range starts afresh
    view = next.view;
    data = next;
    draw();
  };

  return { update };
}
